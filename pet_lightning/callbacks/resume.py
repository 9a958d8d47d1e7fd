"""Preemption and auto-resume: a run stopped by SIGTERM or SIGUSR1 saves where it is, and the same command resumes.

* **Preemption.** SIGTERM (what schedulers send before they kill) and SIGUSR1 (what SLURM sends before a requeue)
  make the run save a resumable checkpoint at the next safe point (the end of the current batch) and exit cleanly.
  Lightning's own SIGTERM handling decides when the loops stop (across all processes under DDP); SIGUSR1 is turned
  into that same path. Under SLURM with auto-requeue, SIGUSR1 is left to Lightning (it saves ``hpc_ckpt_*.ckpt``,
  requeues the job and resumes from it by itself).
* **Auto-resume.** Every resumable checkpoint the run writes (this callback's preemption file, and the step or epoch
  checkpoints of any ``ModelCheckpoint``) is recorded in ``<default_root_dir>/resume/<fingerprint>/latest.json``,
  where the fingerprint names the run's configuration (model and data settings, loop limits, callbacks). A fit
  started with no ``ckpt_path`` continues from the recorded checkpoint and says so in one log line; a run that
  finishes removes the record, so running a finished command again starts over. (Lightning asks
  ``OnExceptionCheckpoint`` callbacks for a checkpoint when ``fit`` gets none: this is one.)

Lightning warns about that request and about mid-epoch resumes in words that are wrong for these runs;
:func:`lightning_resume_warnings_ignored` silences exactly those lines around a fit the CLI or a sweep runs.
What a checkpoint must hold for a resumed run to equal an uninterrupted one is listed in ``docs/resume.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import OnExceptionCheckpoint
from lightning.pytorch.callbacks.checkpoint import Checkpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pet_lightning.checkpoint_io import (
    AtomicCheckpointIO,
    atomic_write_bytes,
    install_atomic_checkpoint_io,
    is_resumable,
)
from pet_lightning.data.sampling import MID_EPOCH_WARNING

POINTER_FILE = "latest.json"
PREEMPTED_FILE = "preempted.ckpt"
# Lightning's wording when it asks an OnExceptionCheckpoint for the checkpoint to resume from (both lines are about
# its own crash checkpoint, and wrong here: no model is missing, and "no last checkpoint" just means a fresh run),
# and its warning that a mid-epoch resume restarts the epoch's data (the resumable samplers continue it).
LIGHTNING_RESUME_WARNINGS = (
    r"`\.fit\(ckpt_path=None\)` was called without a model",
    r"\.fit\(ckpt_path=\"last\"\) is set, but there is no last checkpoint",
    MID_EPOCH_WARNING,
)


@contextlib.contextmanager
def lightning_resume_warnings_ignored() -> Iterator[None]:
    """Silence :data:`LIGHTNING_RESUME_WARNINGS` inside the block (a ``fit``), leaving every other filter as it was."""
    with warnings.catch_warnings():
        for message in LIGHTNING_RESUME_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield


def run_fingerprint(parts: dict[str, Any]) -> str:
    """A short, stable name for a configuration (JSON of ``parts``, unknown types by ``repr``)."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _simple_settings(callback: Any) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(callback).items()
        if not key.startswith("_") and isinstance(value, (bool, int, float, str, type(None)))
    }


def run_settings(trainer: L.Trainer) -> dict[str, Any]:
    """What decides a run's result: module and data settings, the loop limits, the callbacks that act on training.

    Checkpoint-writing and display callbacks are left out: adding a step checkpoint does not make another run.
    """
    module, datamodule = trainer.lightning_module, trainer.datamodule
    callbacks = {
        type(cb).__qualname__: _simple_settings(cb)
        for cb in trainer.callbacks
        if not isinstance(cb, Checkpoint) and "ProgressBar" not in type(cb).__name__
        and type(cb).__name__ not in ("ModelSummary", "RichModelSummary", "LearningRateMonitor")
    }
    return {
        "module": dict(getattr(module, "hparams", {}) or {}),
        "data": dict(getattr(datamodule, "hparams", {}) or {}),
        "trainer": {
            "max_epochs": trainer.max_epochs,
            "max_steps": trainer.max_steps,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "precision": str(trainer.precision),
            "limit_train_batches": trainer.limit_train_batches,
            "world_size": trainer.world_size,
            "gradient_clip_val": trainer.gradient_clip_val,
        },
        "callbacks": callbacks,
    }


class ResumeCheckpoints(OnExceptionCheckpoint):
    """Save a resumable checkpoint on SIGTERM / SIGUSR1; resume a fit given no ``ckpt_path`` from the run's latest.

    The CLI adds it to every run (and binds it to the trainer, which auto-resume needs before ``fit`` starts). It is
    a Lightning ``Checkpoint``, so a ``Trainer(enable_checkpointing=False, callbacks=[...])`` refuses it; append it
    to ``trainer.callbacks`` after building such a trainer, as the CLI does.

    Args:
        dirpath: Folder under which each configuration keeps its resume record and preemption checkpoint
            (``<dirpath>/<fingerprint>/``). None: ``<trainer.default_root_dir>/resume``.
        auto_resume: Resume a fit started without ``ckpt_path`` from the run's latest resumable checkpoint.
    """

    def __init__(self, dirpath: str | None = None, auto_resume: bool = True) -> None:
        Checkpoint.__init__(self)  # OnExceptionCheckpoint's own __init__ wants a fixed file path
        self.root = dirpath
        self.auto_resume = auto_resume
        self.filename = Path(PREEMPTED_FILE).stem
        self._trainer: L.Trainer | None = None
        self._fingerprint: str | None = None
        self._auto_path: str | None = None
        self._previous_sigusr1: Any = None
        # Lightning's ckpt_path="best" reads the first checkpoint callback's best path: this one keeps none.
        self.best_model_path = ""

    # ------------------------------------------------------------------------------------------ where
    def bind(self, trainer: L.Trainer) -> ResumeCheckpoints:
        """Know the trainer before ``fit`` starts (auto-resume is decided before any hook runs)."""
        self._trainer = trainer
        return self

    @property
    def run_folder(self) -> Path:
        trainer = self._trainer
        if trainer is None:
            raise RuntimeError("ResumeCheckpoints is not bound to a trainer: call bind(trainer) before fit")
        if self._fingerprint is None:
            self._fingerprint = run_fingerprint(run_settings(trainer))
        return Path(self.root or Path(trainer.default_root_dir) / "resume") / self._fingerprint

    @property
    def dirpath(self) -> str:
        return str(self.run_folder)

    @property
    def ckpt_path(self) -> str:
        """Lightning resumes a fit given no ``ckpt_path`` from here: the latest resumable checkpoint recorded."""
        if not self.auto_resume or self._trainer is None or self._trainer.state.fn != "fit":
            return os.path.join(os.devnull, "none.ckpt")  # never exists: nothing to resume from
        missing = str(self.run_folder / "none.ckpt")
        pointer = self.run_folder / POINTER_FILE
        if not pointer.is_file():
            return missing
        recorded = json.loads(pointer.read_text(encoding="utf-8"))
        if not Path(recorded["path"]).is_file():
            rank_zero_info(
                f"[pet_lightning] auto-resume: the recorded checkpoint {recorded['path']} is gone: starting over"
            )
            return missing
        self._auto_path = recorded["path"]
        return self._auto_path

    # ------------------------------------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._trainer = trainer
        install_atomic_checkpoint_io(trainer)
        io = trainer.strategy.checkpoint_io
        if isinstance(io, AtomicCheckpointIO) and self._record not in io.on_saved:
            io.on_saved.append(self._record)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the restore (trainer.ckpt_path is set by then).
        if self._auto_path is not None and trainer.ckpt_path is not None and Path(trainer.ckpt_path) == Path(
            self._auto_path
        ):
            rank_zero_info(
                f"[pet_lightning] auto-resume: continuing from {self._auto_path}, the latest resumable checkpoint "
                f"of this configuration (pass ckpt_path to choose another; delete {self.run_folder} to start over)"
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning registered its handlers (SIGTERM always; SIGUSR1 under SLURM auto-requeue, left alone).
        if not SLURMEnvironment.detect() and hasattr(signal, "SIGUSR1"):
            try:
                self._previous_sigusr1 = signal.signal(signal.SIGUSR1, self._sigusr1_as_sigterm)
            except ValueError:  # not the main thread: the process owner handles signals
                self._previous_sigusr1 = None

    @staticmethod
    def _sigusr1_as_sigterm(signum: int, frame: Any) -> None:
        # One path for both signals: Lightning's SIGTERM handler stops every process at the same batch.
        os.kill(os.getpid(), signal.SIGTERM)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_sigusr1()  # Lightning calls no teardown hook after an exception
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        epoch_loop = trainer.fit_loop.epoch_loop
        if epoch_loop.batch_progress.current.processed % trainer.accumulate_grad_batches:
            rank_zero_info(
                "[pet_lightning] preempted in the middle of a gradient accumulation: no checkpoint written (the "
                "last resumable one stays the latest)"
            )
            return
        path = self.run_folder / PREEMPTED_FILE
        trainer.save_checkpoint(path)
        rank_zero_info(
            f"[pet_lightning] preempted at step {trainer.global_step}: saved {path}; run the same command again to "
            "resume from it"
        )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        io = trainer.strategy.checkpoint_io
        if isinstance(io, AtomicCheckpointIO) and self._record in io.on_saved:
            io.on_saved.remove(self._record)
        self._restore_sigusr1()
        # Lightning marks the run finished only after this hook; an interrupted run never gets here as "running".
        if trainer.state.status == "running" and trainer.is_global_zero:
            # A finished run leaves nothing to resume: the same command run again starts over.
            (self.run_folder / POINTER_FILE).unlink(missing_ok=True)
            (self.run_folder / PREEMPTED_FILE).unlink(missing_ok=True)
            for folder in (self.run_folder, self.run_folder.parent):
                with contextlib.suppress(OSError):  # only empty folders go
                    folder.rmdir()
        self._fingerprint = None
        self._auto_path = None

    def _restore_sigusr1(self) -> None:
        if self._previous_sigusr1 is not None:
            signal.signal(signal.SIGUSR1, self._previous_sigusr1)
            self._previous_sigusr1 = None

    def _record(self, path: str, checkpoint: dict[str, Any]) -> None:
        trainer = self._trainer
        if trainer is None or trainer.state.fn != "fit" or not trainer.is_global_zero or not is_resumable(checkpoint):
            return
        entry = {"path": os.path.abspath(path), "step": checkpoint.get("global_step"), "time": time.time()}
        folder = self.run_folder
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / POINTER_FILE, json.dumps(entry).encode())

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore: the record lives beside the checkpoints."""


def bind_resume(trainer: L.Trainer) -> None:
    """Bind every :class:`ResumeCheckpoints` of ``trainer`` to it (the CLI calls this right after building it)."""
    for callback in trainer.callbacks:
        if isinstance(callback, ResumeCheckpoints):
            callback.bind(trainer)


__all__ = [
    "LIGHTNING_RESUME_WARNINGS",
    "POINTER_FILE",
    "PREEMPTED_FILE",
    "ResumeCheckpoints",
    "bind_resume",
    "lightning_resume_warnings_ignored",
    "run_fingerprint",
    "run_settings",
]
