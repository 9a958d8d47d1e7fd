"""One parseable line at the end of every fit: ``SUMMARY key=value ...``."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from pet_lightning.data.contract import task_data


class RunSummary(Callback):
    """Tracks the headline validation metric, training throughput and wall time, and prints::

        SUMMARY task=rte strategy=full trainable=22713216 trainable_pct=100.0000 best_val_accuracy=0.6101 ...

    ``best_val_<headline>`` is the headline at the epoch the run *selected*: the epoch the trainer's checkpoint
    callback keeps (its monitor and mode, e.g. the lowest ``val/loss``; stage-1 epochs of a two-stage run only
    where they may select), named by ``selected_by``. Without a monitored checkpoint callback the run selects
    nothing and the summary shows the epoch with the best headline (``selected_by=val/headline``). When the
    datamodule reports on a separate split (``test`` after ``fit``), ``report_<metric>`` is added by whoever runs
    the test (see the sweep).
    """

    def __init__(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.values: dict[str, Any] = {}
        # (epoch, headline, monitored value, may select) of every validation of the fit.
        self.history: list[tuple[int, float, float | None, bool]] = []
        self._window: float | None = None  # start of the current training stretch (see _now)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        self._train_seconds = 0.0
        self._samples = 0
        self._window = None

    # Throughput is timed over the training stretches of each epoch (from a batch's start to the next validation or
    # the epoch's end), with the device synchronised at the stretches' ends only: per-batch windows read on the host
    # would leave queued GPU work out of the time.
    @staticmethod
    def _now(pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            import torch

            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def _close_window(self, pl_module: L.LightningModule) -> None:
        if self._window is not None:
            self._train_seconds += self._now(pl_module) - self._window
            self._window = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._window is None:  # the first batch of the epoch, or after a validation
            self._window = self._now(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._samples += len(batch["input_ids"]) * trainer.world_size

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_window(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_window(pl_module)

    @staticmethod
    def selector(trainer: L.Trainer) -> tuple[str, str]:
        """(monitor, mode) by which the run selects its kept checkpoint."""
        checkpoint = trainer.checkpoint_callback
        monitor = getattr(checkpoint, "monitor", None)
        if monitor is None:
            return "val/headline", "max"
        return monitor, checkpoint.mode

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not on_validation_epoch_end: callbacks run that hook before the module logs the epoch's metrics.
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get("val/headline")
        if value is None:
            return
        from pet_lightning.callbacks.selection import may_select

        monitor, mode = self.selector(trainer)
        monitored = trainer.callback_metrics.get(monitor)
        self.history.append(
            (trainer.current_epoch, float(value), None if monitored is None else float(monitored), may_select(trainer))
        )
        self.best, self.best_epoch = self.selected(mode)

    def selected(self, mode: str) -> tuple[float | None, int | None]:
        """(headline, epoch) of the first epoch with the best monitored value among those that may select,
        which is the epoch ModelCheckpoint keeps (it replaces its best only on a strict improvement)."""
        best: tuple[float, int] | None = None
        chosen: tuple[float | None, int | None] = (None, None)
        for epoch, headline, monitored, eligible in self.history:
            if not eligible or monitored is None:
                continue
            key = monitored if mode == "min" else -monitored
            if best is None or key < best[0]:
                best, chosen = (key, epoch), (headline, epoch)
        return chosen

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
            "selected_by": self.selector(trainer)[0],
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "wall_s": f"{time.perf_counter() - self._fit_start:.1f}",
            "train_samples_per_s": f"{self._samples / self._train_seconds:.1f}" if self._train_seconds else "nan",
        }
        from pet_lightning.callbacks.distance import measured_distance

        distance = measured_distance(trainer)  # with a PretrainedDistance callback in the trainer
        if distance is not None:
            self.values["distance_l2"] = f"{distance:.6g}"
        data = task_data(trainer)
        if data is not None and data.plan is not None:
            # Selection and reporting on the same examples inflates results: say so on every summary.
            self.values["protocol"] = data.protocol
            self.values["leaky"] = str(data.plan.leaky).lower()
        self.emit()

    @rank_zero_only
    def emit(self) -> None:
        print("SUMMARY " + " ".join(f"{key}={value}" for key, value in self.values.items()), flush=True)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "history": [list(row) for row in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]
        self.best_epoch = state_dict["best_epoch"]
        self.history = [tuple(row) for row in state_dict.get("history", [])]


__all__ = ["RunSummary"]
