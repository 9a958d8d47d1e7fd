"""Quiet Lightning trainers for tests (no logger, no progress bar, no model summary, no checkpoints unless asked),
the suite's precision for fits of the real model, and a checkpoint written without a fit."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import lightning as L


def real_fit_precision() -> str:
    """The precision of the suite's fits of the real model: bf16-mixed (the quickstart's) where this CPU runs bf16
    natively, 32-true where it emulates bf16, which makes every step about 15x slower (pet_lightning.precision) and
    the suite hours long. What these fits check (which tensors train, that a config wires up and fits, that a short
    fine-tune learns) holds in either precision; bf16 itself stays covered by the tiny-model tests and the
    quickstart run, which keep bf16-mixed everywhere."""
    from pet_lightning.precision import cpu_bf16_emulated

    return "32-true" if cpu_bf16_emulated() else "bf16-mixed"


def real_fit_overrides() -> list[str]:
    """``cli.py fit`` arguments that set :func:`real_fit_precision` over a config's own."""
    return [f"--trainer.precision={real_fit_precision()}"]


def quiet_trainer(root: Path | str | None = None, *, precision: str | None = None, callbacks: Iterable = (),
                  **overrides) -> L.Trainer:
    """A one-CPU trainer that writes nothing unless asked (``enable_checkpointing=True``, a ``logger``) and skips
    the sanity validation. ``precision`` defaults to :func:`real_fit_precision`; tests that compare tensors bit for
    bit pass ``"32-true"`` explicitly. ``root`` is the trainer's ``default_root_dir``; ``overrides`` win.

    Lightning's ``deterministic`` flag stays off unless a test asks: the CPU kernels these fits use are
    deterministic already, and the flag flips a process-wide torch switch that Lightning never resets, which would
    leak into every later test of the session."""
    settings = dict(accelerator="cpu", devices=1, precision=precision or real_fit_precision(), logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    num_sanity_val_steps=0, callbacks=list(callbacks))
    if root is not None:
        settings["default_root_dir"] = root
    return L.Trainer(**{**settings, **overrides})


def strategy_callbacks(strategy: dict) -> list[L.Callback]:
    """The callbacks ``strategy`` needs (AdaLoRA's schedule, Child-Tuning's Fisher pass), as PETLightningCLI adds
    them to a configured run."""
    from pet_lightning.lightning_cli import required_callbacks
    from pet_lightning.strategies import build_strategy

    return required_callbacks(build_strategy(strategy), [])


def unfitted_checkpoint(strategy: str) -> dict:
    """A checkpoint as PETModule writes it, without a fit (the head is all a frozen model stores)."""
    from pet_lightning import PETModule

    module = PETModule(task="rte", strategy=strategy, init_seed=0)
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "epoch": 0,
                  "global_step": 0, "pytorch-lightning_version": L.__version__}
    module.on_save_checkpoint(checkpoint)
    return checkpoint
