"""``CollapseGuard``: warn when a run has collapsed to a constant prediction.

Short PETuning runs often end predicting one value: a frozen head that only learned the label mean, a BitFit run
whose training loss sits at the label variance (issue 15: STS-B seeds 1111 and 2222). Such runs score at chance
and look like results. After every validation epoch the guard checks

* **constant validation predictions**: regression: the predictions' standard deviation is below ``std_ratio``
  times the training labels' standard deviation; classification (and multiple choice): every validation
  example gets the same class (choice);
* **training loss at the prior**: from epoch ``min_epoch`` on, the epoch's mean training loss is not below
  ``(1 - loss_tolerance)`` times what predicting the label prior scores: the labels' variance (MSE, regression)
  or the entropy of the training class frequencies (cross-entropy, classification),

and warns with one line naming the epoch and the numbers. It also logs ``collapse/prediction_std`` (regression)
or ``collapse/top_class_fraction`` (classification), and ``collapse/train_loss_over_prior``. Every finding is
kept in :attr:`CollapseGuard.findings`. Predictions are read by a forward hook on the module during validation,
the training loss and labels from the training batches as they pass: nothing runs twice. They stay on the device
until the epoch ends (no host-device sync per batch) and are summed over all ranks under DDP, so every rank judges
the whole data and holds the same findings.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn


def _reduce(trainer: L.Trainer, values: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``values`` summed (or maxed) over every rank: under DDP each rank saw only its shard of the data."""
    strategy = getattr(trainer, "strategy", None)
    if strategy is None or getattr(trainer, "world_size", 1) <= 1:
        return values
    return strategy.reduce(values, reduce_op=op)


def _settle(trainer: L.Trainer, device: torch.device, pending: list[torch.Tensor], regression: bool, moments: list,
            counts: Counter) -> None:
    """Fold the values kept on the device since the last call into ``moments`` (count, sum, sum of squares;
    regression) or class ``counts``, over all ranks; empties ``pending``.

    One host read and at most two small collectives per call (epoch ends), never one per batch. Every rank must
    call it at the same point (it is a collective under DDP), also with nothing pending.
    """
    values = torch.cat([v.reshape(-1) for v in pending]).cpu() if pending else torch.zeros(0)
    pending.clear()
    if regression:
        values = values.double()
        local = torch.tensor([values.numel(), values.sum(), values.pow(2).sum()], dtype=torch.float64)
        total = _reduce(trainer, local.to(device)).cpu()
        moments[0] += int(total[0])
        moments[1] += float(total[1])
        moments[2] += float(total[2])
        return
    values = values.long()
    values = values[values >= 0]
    width = torch.tensor([int(values.max()) + 1 if values.numel() else 0], device=device)
    width = int(_reduce(trainer, width, "max"))
    if width == 0:
        return
    tally = _reduce(trainer, torch.bincount(values, minlength=width).to(device)).cpu()
    counts.update({index: int(n) for index, n in enumerate(tally.tolist()) if n})


def _variance(moments: list) -> float | None:
    """Population variance from (count, sum, sum of squares); None below two values."""
    count, total, squares = moments
    return None if count < 2 else max(0.0, squares / count - (total / count) ** 2)


@dataclass
class CollapseFinding:
    epoch: int
    kind: str  # "constant_predictions" or "loss_at_prior"
    message: str


class CollapseGuard(Callback):
    """Warn (one line, with the epoch and the numbers) when a run collapses to a constant prediction.

    Args:
        std_ratio: Regression: warn when the validation predictions' std is below this fraction of the training
            labels' std.
        loss_tolerance: Warn when the epoch's mean training loss is above ``(1 - loss_tolerance)`` times the
            label prior's loss (variance / class entropy).
        min_epoch: First epoch whose training loss is checked (epoch 0 averages over the initial descent).
    """

    def __init__(self, std_ratio: float = 0.05, loss_tolerance: float = 0.05, min_epoch: int = 1):
        if not 0 < std_ratio < 1 or not 0 <= loss_tolerance < 1 or min_epoch < 0:
            raise ValueError(
                f"CollapseGuard(std_ratio={std_ratio}, loss_tolerance={loss_tolerance}, min_epoch={min_epoch}): use "
                "0 < std_ratio < 1, 0 <= loss_tolerance < 1 and min_epoch >= 0"
            )
        self.std_ratio = std_ratio
        self.loss_tolerance = loss_tolerance
        self.min_epoch = min_epoch
        self.findings: list[CollapseFinding] = []
        self._handle = None
        self._reset_train()
        self._reset_val()

    # ------------------------------------------------------------------------------------------ training
    # Per batch only device-side work: the loss is summed and the labels kept on the device, and both are read once
    # when validation or the epoch ends (a float() or tolist() per batch would stall the GPU every step).
    def _reset_train(self) -> None:
        self._loss_sum, self._loss_batches = 0.0, 0
        self._pending_loss: torch.Tensor | None = None
        self._pending_batches = 0
        self._pending_labels: list[torch.Tensor] = []
        self._labels: Counter = Counter()
        self._label_moments = [0, 0.0, 0.0]  # count, sum, sum of squares (regression)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loss_sum, self._loss_batches = 0.0, 0
        self._pending_loss, self._pending_batches = None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            loss = loss.detach().float()
            self._pending_loss = loss if self._pending_loss is None else self._pending_loss + loss
            self._pending_batches += 1
        self._pending_labels.append(batch["label"].detach())

    def _settle_train(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The epoch's loss so far and the labels seen, read from the device and summed over ranks."""
        device = pl_module.device
        pending = self._pending_loss if self._pending_loss is not None else torch.zeros((), device=device)
        local = torch.stack([pending.to(device=device, dtype=torch.float64),
                             torch.tensor(float(self._pending_batches), dtype=torch.float64, device=device)])
        total = _reduce(trainer, local).tolist()
        self._loss_sum += total[0]
        self._loss_batches += int(total[1])
        self._pending_loss, self._pending_batches = None, 0
        _settle(trainer, device, self._pending_labels, pl_module.spec.kind == "regression", self._label_moments,
                self._labels)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._settle_train(trainer, pl_module)
        prior = self.prior_loss(pl_module.spec.kind)
        if trainer.current_epoch < self.min_epoch or not self._loss_batches or not prior:
            return
        loss = self._loss_sum / self._loss_batches
        if loss >= (1 - self.loss_tolerance) * prior:
            what = "variance" if pl_module.spec.kind == "regression" else "class entropy"
            self._warn(trainer.current_epoch, "loss_at_prior",
                       f"mean training loss {loss:.4f} is not below the label {what} {prior:.4f} (ratio "
                       f"{loss / prior:.3f}): the model has learned no more than the label prior")

    def prior_loss(self, kind: str) -> float | None:
        """Loss of predicting the training label prior, from the labels seen so far in this fit."""
        if kind == "regression":
            return _variance(self._label_moments)
        count = sum(self._labels.values())
        if count == 0:
            return None
        return -sum(n / count * math.log(n / count) for n in self._labels.values() if n)

    # ---------------------------------------------------------------------------------------- validation
    def _reset_val(self) -> None:
        self._pred_moments = [0, 0.0, 0.0]
        self._classes: Counter = Counter()
        self._pending_preds: list[torch.Tensor] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset_val()
        if self._handle is None:
            self._handle = pl_module.register_forward_hook(self._record)

    def _record(self, module, args: Any, logits: torch.Tensor | None) -> None:
        if not torch.is_tensor(logits):
            return  # under DDP Lightning routes validation_step through the module's call too: that output is None
        self._pending_preds.append(module.predictions(logits.detach()))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if trainer.sanity_checking:
            self._pending_preds.clear()
            return
        epoch, kind = trainer.current_epoch, pl_module.spec.kind
        # Every rank settles here (collectives), before any rank-dependent early return.
        regression = kind == "regression"
        _settle(trainer, pl_module.device, self._pending_preds, regression, self._pred_moments, self._classes)
        self._settle_train(trainer, pl_module)
        if kind == "regression":
            count, variance = self._pred_moments[0], _variance(self._pred_moments)
            if variance is None:
                return
            std = math.sqrt(variance)
            pl_module.log("collapse/prediction_std", std, on_epoch=True)
            prior = self.prior_loss(kind)
            label_std = math.sqrt(prior) if prior else None
            if label_std and std < self.std_ratio * label_std:
                self._warn(epoch, "constant_predictions",
                           f"validation predictions are constant: std {std:.4g} over {count} examples, "
                           f"< {self.std_ratio:g} x the training labels' std {label_std:.4g}")
        else:
            count = sum(self._classes.values())
            if count == 0:
                return
            top, top_count = self._classes.most_common(1)[0]
            pl_module.log("collapse/top_class_fraction", top_count / count, on_epoch=True)
            if len(self._classes) == 1 and count > 1:
                self._warn(epoch, "constant_predictions",
                           f"validation predictions are one class only: class {top} for all {count} examples")
        prior = self.prior_loss(kind)
        if self._loss_batches and prior:  # validation runs at the end of the epoch's training batches
            pl_module.log("collapse/train_loss_over_prior", self._loss_sum / self._loss_batches / prior, on_epoch=True)

    def _warn(self, epoch: int, kind: str, message: str) -> None:
        self.findings.append(CollapseFinding(epoch, kind, message))
        rank_zero_warn(f"CollapseGuard: epoch {epoch}: {message}")

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"labels": dict(self._labels), "label_moments": list(self._label_moments)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._labels = Counter(state_dict.get("labels", {}))
        self._label_moments = list(state_dict.get("label_moments", [0, 0.0, 0.0]))


__all__ = ["CollapseFinding", "CollapseGuard"]
