"""The three training loops the per-step comparison steps side by side, each over the same batches.

* :class:`OursSide`: ``PETModule`` + ``lightning.Trainer.fit`` (progress bar, logger, checkpointing and validation
  off): Lightning's own fit loop, hooks, precision plugin and optimizer closure, unchanged;
* :class:`PlainSide`: a hand-written PyTorch loop over a second ``PETModule``'s model, the same AdamW groups,
  kernel and linear schedule: the overhead floor;
* :class:`TrainerSide`: Hugging Face ``Trainer`` with ``peft`` (LoRA, prefix, IA3: the peft config our strategy
  builds), manual freezing (BitFit) or nothing (full fine-tuning).

Every side is built in the calling thread and trained by :meth:`run` in a thread of its own; it calls ``step_done``
after every optimizer step (after the scheduler step and ``zero_grad``), which is where
:mod:`benchmarks.interleave` pauses it between blocks (and synchronises the device, at turn ends only). On CUDA the
three are alike: each pins its batches' memory, and under ``16-mixed`` each scales the loss (the plain loop with a
``GradScaler``, as Lightning and Trainer do). Each side trains ``total_steps`` batches of one fixed order
with a schedule over ``total_steps``, so all sides see the same batches and learning rates at every step.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from benchmarks.common import (
    MODEL_KEYS,
    TRAINER_MAX_GRAD_NORM,
    WARMUP_RATIO,
    WEIGHT_DECAY,
    HFCollator,
    Settings,
    Workload,
    autocast,
)
from benchmarks.memory import optimizer_state_bytes
from pet_lightning import PETModule
from pet_lightning.backbones import load_backbone
from pet_lightning.optim import adamw
from pet_lightning.strategies import build_strategy
from pet_lightning.tasks import get_task

StepDone = Callable[[], None]


def trainer_method(method: str) -> str:
    """How the Trainer side gets ``method``: ``peft``, ``manual freezing`` or ``plain model``."""
    return {"full": "plain model", "bitfit": "manual freezing"}.get(method, "peft")


def hf_model(backbone: str, task: str, method: str) -> torch.nn.Module:
    """What a user would build: peft's get_peft_model with the same method config, manual BitFit freezing, or the
    plain model for full fine-tuning."""
    torch.manual_seed(0)
    model = load_backbone(backbone, get_task(task))
    if method == "full":
        return model
    if method == "bitfit":
        for name, param in model.named_parameters():
            param.requires_grad_(name.endswith("bias") or name.startswith("classifier"))
        return model
    from peft import get_peft_model

    strategy = build_strategy(method)
    return get_peft_model(model, strategy.peft_config(model, "SEQ_CLS"))


def trainable_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class Side:
    """One training loop, built here and run (in its own thread) by :meth:`run`."""

    name = "side"
    description = ""

    def __init__(self, settings: Settings, work: Workload, method: str, precision: str, total_steps: int):
        self.settings, self.work, self.method, self.precision = settings, work, method, precision
        self.total_steps = total_steps
        self.trainable: int | None = None
        self.optimizer_bytes: int | None = None
        self.build_s = 0.0

    def run(self, step_done: StepDone) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Drop what the side holds (models, optimizer state, temporary folders)."""


class _StepHook(L.Callback):
    def __init__(self, step_done: StepDone):
        self.step_done = step_done

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.step_done()


class OursSide(Side):
    name = "ours"
    description = "PETModule + lightning.Trainer.fit"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        s = self.settings
        self.module = PETModule(
            backbone=s.backbone, strategy=self.method, learning_rate=s.learning_rate, init_seed=0,
        )
        self.trainable = trainable_count(self.module.model)
        self.loader = self.work.train_loader(self.total_steps)

    def run(self, step_done: StepDone) -> None:
        s = self.settings
        trainer = L.Trainer(
            accelerator=s.accelerator, devices=1, precision=self.precision, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
            max_steps=self.total_steps, callbacks=[_StepHook(step_done)],
        )
        try:
            trainer.fit(self.module, train_dataloaders=self.loader)
        finally:  # also when the interleaving stops the loop early
            if trainer.optimizers:
                self.optimizer_bytes = optimizer_state_bytes(trainer.optimizers[0])

    def close(self) -> None:
        del self.module, self.loader


class PlainSide(Side):
    name = "plain"
    description = "hand-written PyTorch loop"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        from transformers import get_linear_schedule_with_warmup

        s = self.settings
        module = PETModule(backbone=s.backbone, strategy=self.method, learning_rate=s.learning_rate, init_seed=0)
        self.device = torch.device(s.accelerator)
        self.model = module.model.to(self.device).train()
        self.trainable = trainable_count(self.model)
        groups = module.parameter_groups(s.learning_rate, s.learning_rate)
        self.optimizer = adamw(groups, s.learning_rate)  # the same kernel as ours (fused where supported)
        warmup = int(module.hparams.warmup_ratio * self.total_steps)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, warmup, self.total_steps)
        self.loader = self.work.train_loader(self.total_steps)
        # What Lightning's 16-mixed does: scale the loss, unscale (inside the fused step), skip overflowing steps.
        self.scaler = torch.amp.GradScaler(s.accelerator, enabled=self.precision.startswith("16"))

    def run(self, step_done: StepDone) -> None:
        try:
            self._loop(step_done)
        finally:
            self.optimizer_bytes = optimizer_state_bytes(self.optimizer)

    def _loop(self, step_done: StepDone) -> None:
        accelerator = self.settings.accelerator
        for batch in self.loader:
            # non_blocking from pinned memory, as Lightning moves batches on CUDA
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
            with autocast(accelerator, self.precision):
                logits = self.model(**{k: batch[k] for k in MODEL_KEYS if k in batch}).logits
            loss = F.cross_entropy(logits.float(), batch["label"])
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            step_done()

    def close(self) -> None:
        del self.model, self.optimizer, self.scheduler, self.loader


class TrainerSide(Side):
    name = "trainer"
    description = "Hugging Face Trainer (+ peft)"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        from torch.utils.data import SequentialSampler
        from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

        s, accelerator = self.settings, self.settings.accelerator
        side = self

        class Steps(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                side._step_done()

        class FixedOrderTrainer(Trainer):
            # The same batches as the other sides: no reshuffling.
            def _get_train_sampler(self, train_dataset: Dataset | None = None, *args: Any, **kwargs: Any) -> Any:
                return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

        self._step_done: StepDone = lambda: None
        self._tmp = tempfile.TemporaryDirectory(prefix="pet-bench-trainer-")
        self.model = hf_model(s.backbone, "rte", self.method)
        self.trainable = trainable_count(self.model)
        args = TrainingArguments(
            output_dir=self._tmp.name, per_device_train_batch_size=s.batch_size, max_steps=self.total_steps,
            learning_rate=s.learning_rate, weight_decay=WEIGHT_DECAY, warmup_steps=WARMUP_RATIO,
            max_grad_norm=TRAINER_MAX_GRAD_NORM, logging_strategy="no", save_strategy="no", report_to="none",
            disable_tqdm=True, use_cpu=accelerator == "cpu",
            bf16=self.precision.startswith("bf16"), fp16=self.precision.startswith("16"),
            dataloader_num_workers=0, remove_unused_columns=False, seed=0,
            dataloader_pin_memory=accelerator == "cuda",  # as the other sides' loaders (Workload.train_loader)
        )
        self.trainer = FixedOrderTrainer(
            model=self.model, args=args, train_dataset=self.work.train_dataset(self.total_steps),
            data_collator=HFCollator(self.work.collator), callbacks=[Steps()],
        )
        self.trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict

    def run(self, step_done: StepDone) -> None:
        self._step_done = step_done
        try:
            self.trainer.train()
        finally:
            if self.trainer.optimizer is not None:
                self.optimizer_bytes = optimizer_state_bytes(self.trainer.optimizer)

    def close(self) -> None:
        del self.trainer, self.model
        self._tmp.cleanup()


SIDES: dict[str, type[Side]] = {"ours": OursSide, "plain": PlainSide, "trainer": TrainerSide}


def build_side(name: str, settings: Settings, work: Workload, method: str, precision: str, total_steps: int) -> Side:
    started = time.perf_counter()
    side = SIDES[name](settings, work, method, precision, total_steps)
    side.build_s = time.perf_counter() - started
    return side
