"""Speed and memory of pet_lightning next to what users would otherwise run, in one invocation.

    python -m benchmarks.run                      # full run (under 10 minutes on 2 CPU cores)
    python -m benchmarks.run --quick              # smoke run (tiny batches, every section)
    python -m benchmarks.run --accelerator cuda   # on a GPU

Every runner trains the same model (the offline MiniLM unless ``--backbone``) on the same batches of real RTE
(``PET_DATA_DIR``), with the same batch size, maximum length, precision and thread count:

* **ours**: ``PETModule`` + ``lightning.Trainer`` (progress bar, logger and checkpointing off);
* **plain**: a hand-written PyTorch loop over the same model, optimizer, scheduler and batches (the floor);
* **Trainer**: Hugging Face ``Trainer`` with ``peft`` (LoRA, prefix, IA3) or manual freezing (BitFit).

Timing: each run replays the same ``warmup + steps`` batches ``repeats`` times (one epoch each); the first
``warmup`` steps of every epoch are not timed; a step is timed from the end of the previous one, so data
loading and the loop's own work count. Samples/s is the median over the repeats. Peak memory is the growth of
the process RSS during the run (sampled every 2 ms; CPU) or the peak allocated CUDA memory. Optimizer state is
the bytes in the optimizer's per-parameter state; checkpoint bytes are a resumable checkpoint's file size.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from pet_lightning import PETModule
from pet_lightning.backbones import DEFAULT_BACKBONE, load_backbone
from pet_lightning.data import GlueDataModule
from pet_lightning.data.encoding import EncodedDataset
from pet_lightning.speed import optimizer_state_bytes
from pet_lightning.strategies import STRATEGIES, build_strategy
from pet_lightning.tasks import get_task

# (row, strategy name, settings, note)
STRATEGY_ROWS: list[tuple[str, str, dict[str, Any], str]] = [
    ("full", "full", {}, ""),
    ("frozen", "frozen", {}, "features cached (default)"),
    ("frozen, no cache", "frozen", {}, "cache_features=False"),
    ("bitfit", "bitfit", {}, ""),
    ("layernorm", "layernorm", {}, ""),
    ("top_k_layers (k=2)", "top_k_layers", {"k": 2}, ""),
    ("lora", "lora", {}, ""),
    ("adapter", "adapter", {}, ""),
    ("prefix", "prefix", {}, ""),
    ("ia3", "ia3", {}, ""),
    ("EH-FT stage 1 (lora)", "lora", {}, "TwoStageTraining callback"),
]
TRAINER_METHODS = ("lora", "prefix", "ia3", "bitfit")
MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
OVERHEAD_TARGET = 0.95
TRAINER_TARGET, TRAINER_AIM = 1.0, 1.15
CHEAP_STEP_TARGET = 0.75
CACHE_TARGET = 10.0


@dataclass
class Settings:
    backbone: str = DEFAULT_BACKBONE
    accelerator: str = "cpu"
    precision: str = "32-true"
    threads: int = 2
    batch_size: int = 16
    max_length: int = 128
    warmup: int = 2
    steps: int = 6
    repeats: int = 3
    eval_batches: int = 3
    learning_rate: float = 1e-4
    cache_examples: int = 256
    cache_epochs: int = 3
    scaling_sizes: tuple[int, ...] = (1000, 2000, 4000)
    scaling_lengths: tuple[int, ...] = (64, 128, 256)
    scaling_steps: int = 4
    strategies: tuple[str, ...] = ()
    sections: tuple[str, ...] = ("strategies", "trainer", "scaling", "cache")


@dataclass
class Result:
    """One runner on one configuration."""

    train_sps: float | None = None
    train_sps_repeats: list[float] = field(default_factory=list)
    step_s: float | None = None
    eval_sps: float | None = None
    peak_mb: float | None = None
    optimizer_bytes: int | None = None
    checkpoint_bytes: int | None = None
    trainable: int | None = None
    note: str = ""


# ------------------------------------------------------------------------------------------------- measuring
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory growth while the block runs: process RSS (CPU) or allocated CUDA memory."""

    def __init__(self, accelerator: str):
        self.cuda = accelerator == "cuda"
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start = self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())

    @property
    def mb(self) -> float:
        return (self.peak - self.start) / 2**20


def exact_rss_mode() -> bool:
    """Make freed memory go back to the OS so RSS growth measures live memory (glibc only).

    glibc keeps freed heap memory and raises its mmap threshold after large frees, so a run after another reuses
    memory without growing RSS. A fixed 64 KiB threshold maps every large tensor separately and unmaps it on free.
    It slows allocation, so it is switched on only after all timed runs, for the memory passes.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def samples_per_s(ends: list[float], sizes: list[int], warmup: int, per_epoch: int) -> list[float]:
    """Samples/s of each epoch from step end times: steps ``warmup..`` of every epoch, each timed from the end of
    the step before it."""
    rates = []
    for start in range(0, len(ends) - per_epoch + 1, per_epoch):
        timed = range(start + max(warmup, 1), start + per_epoch)
        seconds = sum(ends[i] - ends[i - 1] for i in timed)
        rates.append(sum(sizes[i] for i in timed) / seconds)
    return rates


class StepTimes(L.Callback):
    """End time and size of every training and validation batch."""

    def __init__(self) -> None:
        self.train: list[float] = []
        self.train_sizes: list[int] = []
        self.eval: list[list[float]] = []
        self.eval_sizes: list[list[int]] = []
        self.epochs: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append((time.perf_counter(), math.nan))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs[-1] = (self.epochs[-1][0], time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train.append(time.perf_counter())
        self.train_sizes.append(len(batch["input_ids"]))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.eval.append([time.perf_counter()])
        self.eval_sizes.append([0])

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.eval[-1].append(time.perf_counter())
        self.eval_sizes[-1].append(len(batch["input_ids"]))


def _eval_rate(timer: StepTimes) -> float | None:
    """Median over validation runs of samples/s, the first batch of each run not timed."""
    rates = []
    for ends, sizes in zip(timer.eval, timer.eval_sizes):
        if len(ends) > 2:
            rates.append(sum(sizes[2:]) / (ends[-1] - ends[1]))
    return statistics.median(rates) if rates else None


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


# ---------------------------------------------------------------------------------------------------- data
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
        order = list(self.datamodule.train_sampler(train, 1, 0))
        self.order = [int(i) for i in order]
        self.collator = self.datamodule.collator

    def train_dataset(self, steps: int) -> EncodedDataset:
        """The first ``steps`` batches' examples, in order (each epoch over it replays the same batches)."""
        features = self.datamodule.datasets["train"].features
        return EncodedDataset([features[i] for i in self.order[: steps * self.settings.batch_size]])

    def train_loader(self, steps: int) -> DataLoader:
        return DataLoader(
            self.train_dataset(steps), batch_size=self.settings.batch_size, shuffle=False, collate_fn=self.collator
        )

    def eval_loader(self) -> DataLoader:
        loader = self.datamodule.val_dataloader()[0]
        keep = list(loader.sampler)[: (self.settings.eval_batches + 1) * loader.batch_size]
        features = self.datamodule.datasets["val"][next(iter(self.datamodule.datasets["val"]))].features
        dataset = EncodedDataset([features[i] for i in keep])
        return DataLoader(dataset, batch_size=loader.batch_size, shuffle=False, collate_fn=self.collator)


# ------------------------------------------------------------------------------------------------- runners
def _trainer(settings: Settings, callbacks: list, **kwargs: Any) -> L.Trainer:
    return L.Trainer(
        accelerator=settings.accelerator, devices=1, precision=settings.precision, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=callbacks, **kwargs,
    )


def run_ours(
    settings: Settings, work: Workload, strategy: str, options: dict[str, Any], *, cache: bool = True,
    two_stage: bool = False, evaluate: bool = True,
) -> Result:
    """PETModule + lightning.Trainer on the fixed batches; then validation throughput and checkpoint size."""
    per_epoch = settings.warmup + settings.steps
    timer = StepTimes()
    callbacks: list[L.Callback] = [timer]
    if two_stage:
        from pet_lightning.callbacks.two_stage import TwoStageTraining

        callbacks.append(TwoStageTraining(stage1_epochs=settings.repeats, log_stage=False))
    with PeakMemory(settings.accelerator) as memory, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = PETModule(
            backbone=settings.backbone, strategy={"name": strategy, **options},
            learning_rate=settings.learning_rate, init_seed=0, cache_features=None if cache else False,
        )
        trainer = _trainer(settings, callbacks, max_epochs=settings.repeats, limit_val_batches=0)
        trainer.fit(module, train_dataloaders=work.train_loader(per_epoch))
    result = Result(peak_mb=memory.mb, trainable=module.report.trainable)
    rates = samples_per_s(timer.train, timer.train_sizes, settings.warmup, per_epoch)
    result.train_sps_repeats = rates
    result.train_sps = statistics.median(rates)
    result.step_s = settings.batch_size / result.train_sps
    result.optimizer_bytes = optimizer_state_bytes(trainer.optimizers[0])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.ckpt"
        trainer.save_checkpoint(path)
        result.checkpoint_bytes = _file_bytes(path)
    if evaluate:
        loader = work.eval_loader()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(settings.repeats):
                _trainer(settings, [timer]).validate(module, dataloaders=loader, verbose=False)
        result.eval_sps = _eval_rate(timer)
    return result


def _autocast(settings: Settings):
    if settings.precision.startswith("bf16"):
        return torch.autocast(settings.accelerator, dtype=torch.bfloat16)
    if settings.precision.startswith("16"):
        return torch.autocast(settings.accelerator, dtype=torch.float16)
    return contextlib.nullcontext()


def run_plain(settings: Settings, work: Workload, strategy: str, options: dict[str, Any]) -> Result:
    """The same model, optimizer groups and schedule in a hand-written loop: the overhead floor."""
    from transformers import get_linear_schedule_with_warmup

    per_epoch = settings.warmup + settings.steps
    device = torch.device(settings.accelerator)
    with PeakMemory(settings.accelerator) as memory, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = PETModule(
            backbone=settings.backbone, strategy={"name": strategy, **options},
            learning_rate=settings.learning_rate, init_seed=0,
        )
        model = module.model.to(device).train()
        groups = module.parameter_groups(settings.learning_rate, settings.learning_rate)
        optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate)
        total = per_epoch * settings.repeats
        scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * total), total)
        loader = work.train_loader(per_epoch)
        ends, sizes = [], []
        for _ in range(settings.repeats):
            for batch in loader:
                batch = {k: v.to(device) for k, v in batch.items()}
                with _autocast(settings):
                    logits = model(**{k: batch[k] for k in MODEL_KEYS if k in batch}).logits
                loss = F.cross_entropy(logits.float(), batch["label"])
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                ends.append(time.perf_counter())
                sizes.append(len(batch["label"]))
    rates = samples_per_s(ends, sizes, settings.warmup, per_epoch)
    result = Result(train_sps=statistics.median(rates), train_sps_repeats=rates, peak_mb=memory.mb)
    result.step_s = settings.batch_size / result.train_sps
    result.optimizer_bytes = optimizer_state_bytes(optimizer)
    return result


class _HFCollator:
    """Our padding collator, with the keys a Hugging Face model takes (``labels``)."""

    def __init__(self, collator: Callable):
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(features)
        out = {k: batch[k] for k in MODEL_KEYS if k in batch}
        out["labels"] = batch["label"]
        return out


def _hf_model(settings: Settings, method: str):
    """What a user would build: peft's get_peft_model with the same method config, or manual BitFit freezing."""
    torch.manual_seed(0)
    model = load_backbone(settings.backbone, get_task("rte"))
    if method == "bitfit":
        for name, param in model.named_parameters():
            param.requires_grad_(name.endswith("bias") or name.startswith("classifier"))
        return model
    from peft import get_peft_model

    strategy = build_strategy(method)
    return get_peft_model(model, strategy.peft_config(model, "SEQ_CLS"))


def run_hf_trainer(settings: Settings, work: Workload, method: str) -> Result:
    """Hugging Face Trainer (+ peft) on the same batches in the same order."""
    from torch.utils.data import SequentialSampler
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    per_epoch = settings.warmup + settings.steps
    ends: list[float] = []

    class Ends(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if settings.accelerator == "cuda":
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

    class FixedOrderTrainer(Trainer):
        # The same batches as the other runners: no reshuffling.
        def _get_train_sampler(self, train_dataset: Dataset | None = None, *args: Any, **kwargs: Any):
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    dataset = work.train_dataset(per_epoch)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with PeakMemory(settings.accelerator) as memory:
            model = _hf_model(settings, method)
            args = TrainingArguments(
                output_dir=tmp, per_device_train_batch_size=settings.batch_size, num_train_epochs=settings.repeats,
                learning_rate=settings.learning_rate, weight_decay=0.01, warmup_steps=0.06, logging_strategy="no",
                save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=settings.accelerator == "cpu",
                bf16=settings.precision.startswith("bf16"), fp16=settings.precision.startswith("16"),
                dataloader_num_workers=0, remove_unused_columns=False, seed=0,
            )
            trainer = FixedOrderTrainer(
                model=model, args=args, train_dataset=dataset, data_collator=_HFCollator(work.collator),
                callbacks=[Ends()],
            )
            trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
            trainer.train()
        trainer.save_model(Path(tmp) / "model")
        torch.save(trainer.optimizer.state_dict(), Path(tmp) / "optimizer.pt")
        checkpoint = _file_bytes(Path(tmp) / "model") + _file_bytes(Path(tmp) / "optimizer.pt")
    sizes = [settings.batch_size] * len(ends)
    rates = samples_per_s(ends, sizes, settings.warmup, per_epoch)
    result = Result(train_sps=statistics.median(rates), train_sps_repeats=rates, peak_mb=memory.mb)
    result.step_s = settings.batch_size / result.train_sps
    result.optimizer_bytes = optimizer_state_bytes(trainer.optimizer)
    result.checkpoint_bytes = checkpoint
    result.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return result


def run_cache(settings: Settings) -> dict[str, Any]:
    """Linear probing epochs with and without the feature cache (whole epochs, timed end to end)."""
    datamodule = GlueDataModule(
        task="rte", backbone=settings.backbone, max_length=settings.max_length, batch_size=settings.batch_size,
        order_seed=0, train_subset=settings.cache_examples,
    )
    epochs: dict[str, list[float]] = {}
    for label, cache, count in (("cached", None, settings.cache_epochs), ("uncached", False, 2)):
        timer = StepTimes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = PETModule(
                backbone=settings.backbone, strategy="frozen", learning_rate=1e-3, init_seed=0, cache_features=cache
            )
            _trainer(settings, [timer], max_epochs=count, limit_val_batches=0).fit(module, datamodule=datamodule)
        epochs[label] = [end - start for start, end in timer.epochs]
    first, later = epochs["cached"][0], statistics.median(epochs["cached"][1:])
    uncached = statistics.median(epochs["uncached"])
    return {"examples": settings.cache_examples, "cached_first_s": first, "cached_later_s": later,
            "uncached_s": uncached, "speedup": uncached / later}


def run_scaling(settings: Settings) -> list[dict[str, Any]]:
    """Time per epoch vs training-set size and maximum length, extrapolated from timed steps.

    The step time is measured once per (strategy, maximum length) on the first batches of the shuffled RTE
    training set; an epoch of N examples is ceil(N / batch size) such steps (RTE has 2490 training examples).
    """
    rows = []
    lengths = sorted(set(settings.scaling_lengths) | {settings.max_length})
    local = Settings(**{**asdict(settings), "steps": settings.scaling_steps, "warmup": 1, "repeats": 1})
    for strategy in ("full", "bitfit"):
        if strategy not in STRATEGIES or (settings.strategies and strategy not in settings.strategies):
            continue
        for length in lengths:
            step_s = run_ours(local, Workload(settings, max_length=length), strategy, {}, evaluate=False).step_s
            sizes = settings.scaling_sizes if length == settings.max_length else (2490,)
            for size in sizes:
                rows.append({"strategy": strategy, "examples": size, "max_length": length, "step_s": step_s,
                             "epoch_s": math.ceil(size / settings.batch_size) * step_s})
    return rows


# ------------------------------------------------------------------------------------------------ printing
def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.2f}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "SHORT"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    body = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: few steps, short inputs")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default=None, help="32-true (CPU default) or bf16-mixed (CUDA default)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the same for every runner)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--strategies", default="", help="comma-separated rows to run (default: all)")
    parser.add_argument("--sections", default="strategies,trainer,scaling,cache")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.accelerator == "cuda" and not torch.cuda.is_available():
        parser.error("--accelerator cuda: no CUDA device is visible; run on a GPU machine or use --accelerator cpu")
    if not os.environ.get("PET_DATA_DIR"):
        parser.error("PET_DATA_DIR is not set: point it at the root holding glue/RTE (the benchmark uses real RTE)")

    settings = Settings(backbone=args.backbone, accelerator=args.accelerator, threads=args.threads)
    settings.precision = args.precision or ("bf16-mixed" if args.accelerator == "cuda" else "32-true")
    if args.quick:
        settings = Settings(
            **{**asdict(settings), "batch_size": 8, "max_length": 64, "warmup": 1, "steps": 2, "repeats": 2,
               "eval_batches": 1, "cache_examples": 32, "cache_epochs": 2, "scaling_sizes": (64, 128),
               "scaling_lengths": (32, 64), "scaling_steps": 2}
        )
    for name in ("batch_size", "max_length", "steps", "repeats"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    settings.strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    settings.sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    torch.set_num_threads(settings.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for noisy in ("lightning.pytorch", "lightning.fabric", "transformers", "accelerate"):
        import logging

        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    began = time.perf_counter()
    print(f"pet_lightning benchmark: {settings.backbone} on RTE, batch {settings.batch_size}, max length "
          f"{settings.max_length}, {settings.precision}, {settings.accelerator}, {settings.threads} threads; "
          f"{settings.warmup} warm-up + {settings.steps} timed steps x {settings.repeats} repeats (median)")
    work = Workload(settings)
    figures: dict[str, Any] = {"settings": asdict(settings)}
    targets: list[tuple[str, str, str]] = []

    wanted = [row for row in STRATEGY_ROWS if not settings.strategies or row[1] in settings.strategies
              or row[0] in settings.strategies]
    runnable = [row for row in wanted if row[1] in STRATEGIES]
    methods = [m for m in TRAINER_METHODS if not settings.strategies or m in settings.strategies]

    # 1. Timed runs (default allocator).
    ours: dict[str, Result] = {}
    plain: dict[str, Result] = {}
    theirs: dict[str, Result] = {}
    if "strategies" in settings.sections:
        for label, strategy, options, _ in runnable:
            ours[label] = run_ours(
                settings, work, strategy, options, cache="no cache" not in label, two_stage="EH-FT" in label
            )
            _progress(f"{label}: {ours[label].train_sps:.1f} samples/s")
        for label in ("full", "lora"):
            if label in ours:
                plain[label] = run_plain(settings, work, label, {})
    if "trainer" in settings.sections:
        for method in methods:
            if method in STRATEGIES:
                if method not in ours:
                    ours[method] = run_ours(settings, work, method, {}, evaluate=False)
                theirs[method] = run_hf_trainer(settings, work, method)
                _progress(f"Trainer {method}: {theirs[method].train_sps:.1f} samples/s")
    cache = run_cache(settings) if "cache" in settings.sections and "frozen" in STRATEGIES else None
    scaling = run_scaling(settings) if "scaling" in settings.sections else None

    # 2. Memory passes: on CPU, RSS growth of one short run each, with freed memory returned to the OS.
    if settings.accelerator == "cpu" and (ours or theirs):
        exact = exact_rss_mode()
        short = Settings(**{**asdict(settings), "warmup": 1, "steps": 1, "repeats": 1})
        for result in (*ours.values(), *theirs.values()):
            result.peak_mb = None  # timed runs reuse each other's freed memory: not comparable
        for label, strategy, options, _ in runnable:
            if label in ours:
                cached = "no cache" not in label
                ours[label].peak_mb = run_ours(short, work, strategy, options, cache=cached, evaluate=False).peak_mb
        for method in theirs:
            if method in ours and ours[method].peak_mb is None:
                ours[method].peak_mb = run_ours(short, work, method, {}, evaluate=False).peak_mb
            theirs[method].peak_mb = run_hf_trainer(short, work, method).peak_mb
        note = "" if exact else " (allocator not glibc: approximate)"
        figures["memory_note"] = f"peak MB: process RSS growth during a 2-step run{note}"

    # 3. Tables.
    if "strategies" in settings.sections:
        rows = []
        for label, _, _, note in wanted:
            if label not in ours:
                rows.append([label, "n/a (not registered)"] + [""] * 7)
                continue
            r = ours[label]
            rows.append([label, _fmt(r.train_sps), _fmt(r.eval_sps), f"{r.step_s * 1000:.0f}", _fmt(r.peak_mb, ".0f"),
                         _mb(r.optimizer_bytes), _mb(r.checkpoint_bytes), f"{r.trainable:,}", note])
        print("\n== Strategies (ours: PETModule + lightning.Trainer); "
              + figures.get("memory_note", "peak MB: peak allocated CUDA memory"))
        print(_table(["strategy", "train samples/s", "eval samples/s", "step ms", "peak MB", "optim MB",
                      "ckpt MB", "trainable", "note"], rows))
        rows = []
        for label, result in plain.items():
            ratio = ours[label].train_sps / result.train_sps
            verdict = _verdict(ratio >= OVERHEAD_TARGET)
            rows.append([label, _fmt(ours[label].train_sps), _fmt(result.train_sps), f"{ratio:.3f}", verdict])
            targets.append((f"our loop within 5% of the plain loop ({label})", f"{ratio:.3f}x", verdict))
        if rows:
            print("\n== Overhead: ours vs a plain PyTorch loop (same model, optimizer, schedule, batches)")
            print(_table(["strategy", "ours samples/s", "plain samples/s", "ours/plain", "target >= 0.95"], rows))
        if "full" in ours:
            for label in ("bitfit", "layernorm"):
                if label in ours:
                    ratio = ours[label].step_s / ours["full"].step_s
                    verdict = _verdict(ratio <= CHEAP_STEP_TARGET)
                    targets.append((f"{label} step / full step (<= 0.75)", f"{ratio:.2f}x", verdict))
            full_mb = ours["full"].peak_mb
            for label, result in ours.items():
                if label != "full" and result.peak_mb is not None and full_mb is not None:
                    measured = f"{result.peak_mb:.0f} vs {full_mb:.0f} MB"
                    targets.append((f"peak memory {label} < full", measured, _verdict(result.peak_mb < full_mb)))

    if "trainer" in settings.sections:
        rows = []
        for method in methods:
            if method not in theirs:
                rows.append([method, "n/a (not registered)", "", "", "", "", ""])
                continue
            mine, other = ours[method], theirs[method]
            ratio = mine.train_sps / other.train_sps
            verdict = _verdict(ratio >= TRAINER_TARGET) + (" (aim met)" if ratio >= TRAINER_AIM else "")
            rows.append([method, _fmt(mine.train_sps), _fmt(other.train_sps), f"{ratio:.3f}",
                         f"{_fmt(mine.peak_mb, '.0f')} / {_fmt(other.peak_mb, '.0f')}",
                         f"{_mb(mine.checkpoint_bytes)} / {_mb(other.checkpoint_bytes)}", verdict])
            targets.append((f"ours vs Trainer+peft ({method})", f"{ratio:.3f}x", verdict))
        print("\n== Ours vs Hugging Face Trainer + peft (BitFit: manual freezing); same batches")
        print(_table(["method", "ours samples/s", "Trainer samples/s", "ours/Trainer", "peak MB ours/Trainer",
                      "ckpt MB ours/Trainer (resumable)", "target >= 1.0 (aim 1.15)"], rows))

    if cache is not None:
        print(f"\n== Linear probing with the feature cache ({cache['examples']} training examples, whole epochs)")
        print(_table(["", "epoch s"], [["uncached epoch", f"{cache['uncached_s']:.3f}"],
                                       ["cached: first epoch (fills the cache)", f"{cache['cached_first_s']:.3f}"],
                                       ["cached: later epochs", f"{cache['cached_later_s']:.3f}"]]))
        targets.append(("cached linear-probing epoch >= 10x faster than uncached", f"{cache['speedup']:.1f}x",
                        _verdict(cache["speedup"] >= CACHE_TARGET)))

    if scaling is not None:
        print(f"\n== Scaling: time per epoch, EXTRAPOLATED: ceil(examples / {settings.batch_size}) steps x the step "
              f"time of {settings.scaling_steps} timed steps on RTE batches (RTE has 2490 training examples)")
        print(_table(["strategy", "examples", "max length", "step ms", "epoch s"],
                     [[r["strategy"], r["examples"], r["max_length"], f"{r['step_s'] * 1000:.0f}",
                       f"{r['epoch_s']:.1f}"] for r in scaling]))
    figures.update({"strategies": {k: asdict(v) for k, v in ours.items()},
                    "plain": {k: asdict(v) for k, v in plain.items()},
                    "trainer": {k: asdict(v) for k, v in theirs.items()}, "cache": cache, "scaling": scaling})

    if targets:
        print("\n== Targets")
        print(_table(["target", "measured", "result"], [list(t) for t in targets]))
    figures["targets"] = targets
    figures["wall_s"] = time.perf_counter() - began
    print(f"\nwall time {figures['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return figures


if __name__ == "__main__":
    main()
