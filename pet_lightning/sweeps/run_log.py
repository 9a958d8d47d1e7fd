"""A run's log, ``<run_dir>/progress.jsonl``: one JSON line per event (``trial``, ``start``, ``epoch``, ``done``)
with its time and process; tests, the throughput benchmark and ``scripts/trial_time_shares.py`` read it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

PROGRESS_FILE = "progress.jsonl"


def log_event(path: Path, **event: Any) -> None:
    """One line of ``progress.jsonl``: what the run did and when (tests and the throughput benchmark read it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({**event, "pid": os.getpid(), "time": time.time()}) + "\n")


class RunLog(Callback):
    """Appends ``start`` (with the epoch and step it starts from) and ``epoch`` events to ``progress.jsonl``.

    Each ``epoch`` event also says where the epoch's time went: ``train_s`` (from the epoch's start to its
    validation: the training steps with their data loading and logging) and ``validation_s``. What happens after
    the event (the epoch checkpoint and Ray's copy of it) falls in the gap before the next epoch starts, and the
    time before ``start`` (model build, reading and tokenising the data, the sanity check) in the gap after the
    ``trial`` event: ``scripts/trial_time_shares.py`` adds them up per study.
    """

    def __init__(self, path: Path):
        self.path = path
        self._epoch_start = self._validation_start = 0.0
        self._validation_s = 0.0

    def write(self, **event: Any) -> None:
        log_event(self.path, **event)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(event="start", epoch=trainer.current_epoch, step=trainer.global_step,
                   resumed=trainer.ckpt_path is not None)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start, self._validation_s = time.perf_counter(), 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validation_s += time.perf_counter() - self._validation_start

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        elapsed = time.perf_counter() - self._epoch_start
        self.write(event="epoch", epoch=trainer.current_epoch, step=trainer.global_step,
                   train_s=round(elapsed - self._validation_s, 3), validation_s=round(self._validation_s, 3))
