"""Fault injection for the crash, preemption and sweep-retry tests: one test-only callback, no hook in the package.

:class:`FaultInjection` kills, signals, fails or pauses a fit at a chosen point; :class:`FaultyCheckpointIO`
(which it installs) cuts a checkpoint write in half. The faults of a process come from ``PET_TEST_FAULTS`` (JSON of
:class:`Faults`, written by :meth:`Faults.env`), so a test can fault the first run of a command and run the very
same command again without them.

The callback reaches the processes the tests start (``cli.py`` processes, the fork server's children, Ray's trial
workers) through Lightning's external-callback entry point (group ``lightning.pytorch.callbacks_factory``): the
folder :data:`PLUGIN_DIR` holds a package record whose entry point is :func:`callbacks`, and :func:`plugin_env`
puts it on ``PYTHONPATH``. Every Trainer of such a process then gets one :class:`FaultInjection`; without
``PET_TEST_FAULTS`` it does nothing. A process whose path lacks the folder (pytest itself) never sees it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import io
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from pet_lightning.checkpoint_io import AtomicCheckpointIO, atomic_write, is_local, local_path

FAULTS_ENV = "PET_TEST_FAULTS"
PLUGIN_DIR = Path(__file__).resolve().parent / "fault_plugin"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Faults:
    """What to break, and when. Steps are global steps; run-id globs match a sweep run's folder name."""

    kill_at_step: int | None = dataclasses.field(
        default=None, metadata={"help": "SIGKILL in the middle of this step: after backward, before the optimizer"})
    kill_in_write: int | None = dataclasses.field(
        default=None, metadata={"help": "SIGKILL half-way through writing the checkpoint of this step"})
    oserror_in_write: int | None = dataclasses.field(
        default=None, metadata={"help": "raise a full-disk OSError half-way through writing this step's checkpoint"})
    sigterm_at_step: int | None = dataclasses.field(
        default=None, metadata={"help": "send SIGTERM at the end of this step (a scheduler's preemption)"})
    sigusr1_at_step: int | None = dataclasses.field(
        default=None, metadata={"help": "send SIGUSR1 at the end of this step (SLURM's warning before a requeue)"})
    raise_once: str | None = dataclasses.field(
        default=None, metadata={"help": "runs matching this glob raise InjectedFault after their first epoch, on "
                                        "their first attempt only"})
    raise_always: str | None = dataclasses.field(
        default=None, metadata={"help": "runs matching this glob raise InjectedFault as their first epoch "
                                        "starts, on every attempt"})
    pause_between_epochs: float | None = dataclasses.field(
        default=None, metadata={"help": "seconds every run sleeps between two epochs (its epoch checkpoint is "
                                        "stored by then), so a test can kill the sweep driver there"})

    @classmethod
    def from_env(cls) -> Faults:
        return cls(**json.loads(os.environ.get(FAULTS_ENV) or "{}"))

    def env(self) -> dict[str, str]:
        """The environment entry that makes a process (with :func:`plugin_env`) inject these faults."""
        settings = {key: value for key, value in dataclasses.asdict(self).items() if value is not None}
        return {FAULTS_ENV: json.dumps(settings)}

    def write_fault(self, step: int | None) -> str | None:
        if step is not None and step == self.kill_in_write:
            return "kill"
        if step is not None and step == self.oserror_in_write:
            return "oserror"
        return None


class InjectedFault(RuntimeError):
    """The failure a :class:`Faults` ``raise_once`` / ``raise_always`` makes a run raise."""


class FaultyCheckpointIO(AtomicCheckpointIO):
    """:class:`AtomicCheckpointIO` whose write of a chosen step stops half-way: killed, or failing like a full disk.

    Half the bytes reach the temporary file first, so the test sees what a real crash mid-write leaves behind.
    """

    def __init__(self, faults: Faults) -> None:
        super().__init__()
        self.faults = faults

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        fault = self.faults.write_fault(checkpoint.get("global_step"))
        if fault is not None and storage_options is None and is_local(path):
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            data = buffer.getvalue()

            def half_then_fail(handle) -> None:
                handle.write(data[: len(data) // 2])
                if fault == "kill":
                    handle.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                raise OSError(28, "No space left on device (injected by tests.helpers.faults)", str(handle.name))

            atomic_write(local_path(path), half_then_fail)
        super().save_checkpoint(checkpoint, path, storage_options)


def install_faulty_checkpoint_io(trainer: L.Trainer, faults: Faults) -> FaultyCheckpointIO:
    """Give ``trainer`` a :class:`FaultyCheckpointIO` in place of its (atomic or default) CheckpointIO, keeping the
    listeners already attached to it (the resume callback's record of the latest checkpoint)."""
    current = trainer.strategy.checkpoint_io
    if type(current) not in (TorchCheckpointIO, AtomicCheckpointIO):
        raise TypeError(f"cannot inject write faults into a {type(current).__name__}")
    faulty = FaultyCheckpointIO(faults)
    faulty.on_saved = list(getattr(current, "on_saved", []))
    trainer.strategy.checkpoint_io = faulty
    return faulty


class FaultInjection(L.Callback):
    """Breaks a fit as :class:`Faults` says (by default, as ``PET_TEST_FAULTS`` says). Its settings are private so
    that a fault never changes a run's resume fingerprint."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._faults = Faults.from_env() if faults is None else faults
        self._sent: set[str] = set()
        self._first_epoch = True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and (self._faults.kill_in_write is not None or self._faults.oserror_in_write is not None):
            install_faulty_checkpoint_io(trainer, self._faults)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_epoch = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Epoch hooks, not train-start or epoch-end ones: a sweep appends its run log and epoch checkpoint after
        # the trainer is built, so they run after this callback in any one hook. At the first epoch start of a fit
        # every callback has seen the start of training; at a later one the previous epoch is checkpointed.
        first, self._first_epoch = self._first_epoch, False
        if first:
            if _matches(self._faults.raise_always, trainer):
                raise InjectedFault(f"run {_run_id(trainer)} fails every attempt")
            return
        if self._faults.pause_between_epochs:
            time.sleep(self._faults.pause_between_epochs)
        marker = Path(trainer.default_root_dir) / ".fault_once"
        if _matches(self._faults.raise_once, trainer) and not marker.exists():
            marker.touch()
            raise InjectedFault(f"run {_run_id(trainer)} fails once, after epoch {trainer.current_epoch - 1}")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        # Mid-step: gradients computed, weights not yet updated, step N's checkpoint not written.
        if self._faults.kill_at_step == trainer.global_step + 1:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        for name, signum in (("sigterm_at_step", signal.SIGTERM), ("sigusr1_at_step", signal.SIGUSR1)):
            if getattr(self._faults, name) == step and name not in self._sent:
                self._sent.add(name)
                print(f"[tests] fault injection: {signal.Signals(signum).name} at step {step} "
                      f"time={time.time():.3f}", flush=True)
                os.kill(os.getpid(), signum)


def _run_id(trainer: L.Trainer) -> str:
    """A sweep run's id: the name of its folder, which the sweep makes the trainer's root."""
    return Path(trainer.default_root_dir).name


def _matches(pattern: str | None, trainer: L.Trainer) -> bool:
    return pattern is not None and fnmatch.fnmatchcase(_run_id(trainer), pattern)


def callbacks() -> list[L.Callback]:
    """The entry point Lightning calls for every Trainer of a process that has :data:`PLUGIN_DIR` on its path."""
    return [FaultInjection()]


def plugin_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with :data:`PLUGIN_DIR` and the repository on
    ``PYTHONPATH``: the processes started with it give every Trainer a :class:`FaultInjection`."""
    env = dict(os.environ if base is None else base)
    paths = [str(PLUGIN_DIR), str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


__all__ = [
    "FAULTS_ENV",
    "PLUGIN_DIR",
    "FaultInjection",
    "Faults",
    "FaultyCheckpointIO",
    "InjectedFault",
    "callbacks",
    "install_faulty_checkpoint_io",
    "plugin_env",
]
