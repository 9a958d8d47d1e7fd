"""What every benchmark section shares: the settings, the fixed RTE batches, the result record, the table printer."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from pet_lightning import PETModule
from pet_lightning.backbones import DEFAULT_BACKBONE
from pet_lightning.data import GlueDataModule
from pet_lightning.data.encoding import EncodedDataset

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
PRECISIONS = ("32-true", "bf16-mixed")
# Ours trains with PETModule's defaults; the Trainer side is given the same, read from there so they cannot drift.
_MODULE_DEFAULTS = inspect.signature(PETModule.__init__).parameters
WEIGHT_DECAY: float = _MODULE_DEFAULTS["weight_decay"].default
WARMUP_RATIO: float = _MODULE_DEFAULTS["warmup_ratio"].default
# Trainer clips gradients to norm 1.0 by default; ours and the plain loop do not (Lightning's gradient_clip_val is
# None). 0 turns Trainer's clipping off so every side does the same math; clipping costs Trainer one norm over
# every trainable tensor per step (full fine-tuning: 22.7M values).
TRAINER_MAX_GRAD_NORM = 0.0


@dataclass
class Settings:
    """Everything a section needs to know; ``python -m benchmarks.run --help`` documents each option."""

    backbone: str = DEFAULT_BACKBONE
    accelerator: str = "cpu"
    precision: str = "32-true"
    precisions: tuple[str, ...] = PRECISIONS
    threads: int = 2
    batch_size: int = 16
    max_length: int = 128
    # strategies table (one precision: the first of ``precisions``)
    warmup: int = 1
    steps: int = 3
    repeats: int = 2
    eval_batches: int = 2
    learning_rate: float = 1e-4
    cache_examples: int = 256
    cache_epochs: int = 3
    scaling_sizes: tuple[int, ...] = (1000, 2000, 4000)
    scaling_lengths: tuple[int, ...] = (64, 128, 256)
    scaling_steps: int = 2
    strategies: tuple[str, ...] = ()
    sections: tuple[str, ...] = ("strategies", "ab", "e2e", "scaling", "cache")
    # interleaved A/B per-step timing (benchmarks.interleave): each cell is built afresh ab_builds times and timed
    # in ab_blocks kept blocks of ab_block_steps timed steps per side (one rotation of the 3 sides: 3 blocks)
    ab_methods: tuple[str, ...] = ("full", "bitfit", "lora", "prefix", "ia3")
    ab_builds: int = 6
    ab_blocks: int = 3
    ab_block_steps: int = 1
    # end-to-end time-to-result
    e2e_tasks: tuple[str, ...] = ("cb",)
    e2e_methods: tuple[str, ...] = ("full", "lora", "bitfit")
    e2e_precision: str = "bf16-mixed"
    e2e_repeats: int = 3
    e2e_epochs: int = 10
    e2e_patience: int = 3
    e2e_train_subset: int | None = 64
    e2e_max_length: int = 128
    e2e_learning_rates: dict[str, float] = field(
        default_factory=lambda: {"full": 5e-5, "lora": 5e-4, "bitfit": 1e-3}
    )


@dataclass
class Result:
    """One runner on one configuration (strategies table)."""

    train_sps: float | None = None
    train_sps_repeats: list[float] = field(default_factory=list)
    step_s: float | None = None
    eval_sps: float | None = None
    peak_mb: float | None = None
    optimizer_bytes: int | None = None
    checkpoint_bytes: int | None = None
    trainable: int | None = None
    note: str = ""


class Workload:
    """The batches every runner trains on: a fixed order of RTE training examples, and evaluation batches."""

    def __init__(self, settings: Settings, max_length: int | None = None):
        self.settings = settings
        self.datamodule = GlueDataModule(
            task="rte", backbone=settings.backbone, max_length=max_length or settings.max_length,
            batch_size=settings.batch_size, order_seed=0,
        )
        self.datamodule.setup("fit")
        train = self.datamodule.datasets["train"]
        self.order = [int(i) for i in self.datamodule.train_sampler(train, 1, 0)]
        self.collator = self.datamodule.collator

    def train_dataset(self, steps: int) -> EncodedDataset:
        """The first ``steps`` batches' examples, in order (each epoch over it replays the same batches); the order
        wraps around when ``steps`` batches need more examples than RTE's training set holds."""
        features = self.datamodule.datasets["train"].features
        count = steps * self.settings.batch_size
        return EncodedDataset([features[self.order[i % len(self.order)]] for i in range(count)])

    def train_loader(self, steps: int) -> DataLoader:
        # Pinned on CUDA, as Lightning's users' loaders (TaskDataModule) and Trainer's are.
        return DataLoader(
            self.train_dataset(steps), batch_size=self.settings.batch_size, shuffle=False, collate_fn=self.collator,
            pin_memory=self.settings.accelerator == "cuda",
        )

    def eval_loader(self) -> DataLoader:
        loader = self.datamodule.val_dataloader()[0]
        keep = list(loader.sampler)[: (self.settings.eval_batches + 1) * loader.batch_size]
        features = self.datamodule.datasets["val"][next(iter(self.datamodule.datasets["val"]))].features
        dataset = EncodedDataset([features[i] for i in keep])
        return DataLoader(dataset, batch_size=loader.batch_size, shuffle=False, collate_fn=self.collator)


def autocast(accelerator: str, precision: str) -> contextlib.AbstractContextManager:
    """The autocast a hand-written loop uses for ``precision`` (Lightning's and Trainer's own do the same)."""
    if precision.startswith("bf16"):
        return torch.autocast(accelerator, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(accelerator, dtype=torch.float16)
    return contextlib.nullcontext()


class HFCollator:
    """Our padding collator, with the keys a Hugging Face model takes (``labels``; no ``idx``)."""

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(features)
        out = {k: batch[k] for k in MODEL_KEYS if k in batch}
        out["labels"] = batch["label"]
        return out


def quiet_libraries() -> None:
    """Silence the libraries' info logging and progress bars (the tables are the output)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for noisy in ("lightning.pytorch", "lightning.fabric", "transformers", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.2f}"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    body = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])
