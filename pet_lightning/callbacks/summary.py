"""One parseable line at the end of every fit: ``SUMMARY key=value ...``."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only


class RunSummary(Callback):
    """Tracks the headline validation metric, training throughput and wall time, and prints::

        SUMMARY task=rte strategy=full trainable=22713216 trainable_pct=100.0000 best_val_accuracy=0.6101 ...

    The best validation value is the one at the best selection epoch; when the datamodule reports on a separate
    split (``test`` after ``fit``), ``report_<metric>`` is added by whoever runs the test (see the CLI).
    """

    def __init__(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.values: dict[str, Any] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        self._train_seconds = 0.0
        self._samples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._train_seconds += time.perf_counter() - self._batch_start
        self._samples += len(batch["input_ids"]) * trainer.world_size

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not on_validation_epoch_end: callbacks run that hook before the module logs the epoch's metrics.
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get("val/headline")
        if value is None:
            return
        value = float(value)
        if self.best is None or value > self.best:
            self.best, self.best_epoch = value, trainer.current_epoch

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        report = pl_module.report
        spec = pl_module.spec
        self.values = {
            "task": spec.name,
            "strategy": report.strategy,
            "trainable": report.trainable,
            "trainable_pct": f"{report.percent:.4f}",
            f"best_val_{spec.headline}": "nan" if self.best is None else f"{self.best:.4f}",
            "best_epoch": self.best_epoch if self.best_epoch is not None else -1,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "wall_s": f"{time.perf_counter() - self._fit_start:.1f}",
            "train_samples_per_s": f"{self._samples / self._train_seconds:.1f}" if self._train_seconds else "nan",
        }
        plan = getattr(getattr(trainer, "datamodule", None), "plan", None)
        if plan is not None:
            # Selection and reporting on the same examples inflates results: say so on every summary.
            self.values["protocol"] = trainer.datamodule.protocol
            self.values["leaky"] = str(plan.leaky).lower()
        self.emit()

    @rank_zero_only
    def emit(self) -> None:
        print("SUMMARY " + " ".join(f"{key}={value}" for key, value in self.values.items()), flush=True)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]
        self.best_epoch = state_dict["best_epoch"]


__all__ = ["RunSummary"]
