"""Callbacks that record what a fit did (head tensors at a stage boundary, learning rates, gradients) for tests to
assert on."""

from __future__ import annotations

import lightning as L
import torch

from pet_lightning.strategies.base import unwrap


def head_tensors(pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
    """A copy of the classification head's parameters, by name within the head."""
    return {n: p.detach().clone() for n, p in unwrap(pl_module.model).classifier.named_parameters()}


class HeadAtBoundary(L.Callback):
    """Listed after TwoStageTraining: the head at fit start (``seen["start"]``), at the end of stage 1
    (``"stage1"``) and right after the switch (``"stage2"``), for a stage 1 of ``boundary`` epochs."""

    def __init__(self, boundary: int = 1):
        self.boundary = boundary
        self.seen: dict[str, dict[str, torch.Tensor]] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seen["start"] = head_tensors(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.boundary - 1:
            self.seen["stage1"] = head_tensors(pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.boundary:
            self.seen["stage2"] = head_tensors(pl_module)


class LearningRates(L.Callback):
    """The first parameter group's learning rate at the start of every training batch."""

    def __init__(self):
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


class FirstStepGrads(L.Callback):
    """The gradients of the first optimizer step as the optimizer sees them (after any masking hooks ran)."""

    def __init__(self):
        self.grads: dict[str, torch.Tensor] | None = None

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if self.grads is None:
            self.grads = {n: p.grad.detach().clone() for n, p in pl_module.model.named_parameters()
                          if p.grad is not None}
