"""Timing a sweep run's training steps on this machine, for the plan's estimate (:mod:`pet_lightning.sweeps.cost`).

A timing fit is the run's own LightningCLI config with the strategy of one stage, no validation, no logger and no
checkpoints, stopped after a warm-up step and a few timed ones; the console stays quiet, since the plan is the output.

The first batches of an epoch are not its typical ones: grouped by length, each window of the training order starts
with its longest examples. A step's time is taken as proportional to the tokens of its padded batch, so the timed
steps give seconds per padded token, scaled to the epoch's mean padded batch (:func:`mean_padded_tokens`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from pet_lightning.data.encoding import padded_length
from pet_lightning.sweeps.files import SweepError
from pet_lightning.sweeps.plan import REPLACED_CALLBACKS, RunSpec, SweepConfig

TWO_STAGE = "TwoStageTraining"


@dataclass
class Timing:
    step_s: float  # a mean step of the epoch (timed steps scaled by tokens, see the module docstring)
    build_s: float  # model build + data preparation, until the first step
    val_s: float  # one validation pass over the selection split
    test_s: float  # the run's final test: one pass over the reported split, often larger than the selection split


class StepClock(L.Callback):
    """Wall time until the first training step, and of each step after the warm-up ones with its padded tokens."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.started = time.perf_counter()
        self.first: float | None = None
        self.steps: list[float] = []
        self.tokens: list[int] = []
        self._t = 0.0
        self._tokens = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, *args: Any) -> None:
        self._t = time.perf_counter()
        ids = batch["input_ids"]  # [batch, length], or [batch, choices, length]: counted as batch x length
        self._tokens = int(ids.shape[0] * ids.shape[-1])
        self.first = self.first or self._t

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step > self.warmup:
            self.steps.append(time.perf_counter() - self._t)
            self.tokens.append(self._tokens)

    def seconds_per_token(self) -> float:
        return sum(self.steps) / max(1, sum(self.tokens))


def mean_padded_tokens(order: list[int], lengths: list[int], batch_size: int, multiple: int | None = None) -> float:
    """Mean tokens of a padded batch over one epoch: ``order`` cut into batches of ``batch_size``, each padded to
    its longest example (rounded up to ``multiple``), as the collator pads them."""
    sizes = []
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        sizes.append(len(batch) * padded_length(max(lengths[i] for i in batch), multiple))
    return sum(sizes) / len(sizes)


def _epoch_tokens(datamodule: Any) -> float:
    loader = datamodule.train_dataloader()
    return mean_padded_tokens(list(iter(loader.sampler)), datamodule.datasets["train"].lengths(), loader.batch_size,
                              datamodule.collator.pad_to_multiple_of)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep the timing fits' summaries, Lightning's notes and warnings off the console: the plan is the output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def time_configuration(sweep: SweepConfig, run: RunSpec, stage: Any, steps: int, warmup: int = 1,
                       validate: bool = True) -> Timing:
    """Train ``warmup + steps`` steps of ``run`` with ``stage``'s strategy here, as a trial would (its threads and
    precision), then (``validate``) one validation pass and one test pass; ``val_s`` and ``test_s`` are 0 without."""
    import torch

    from pet_lightning.lightning_cli import cli_from_config

    config = copy.deepcopy(run.config)
    config["model"]["strategy"] = stage.strategy
    config["seed_everything"] = run.order_seed
    trainer = config.setdefault("trainer", {})
    trainer["callbacks"] = [cb for cb in trainer.get("callbacks") or []
                            if not str(cb.get("class_path", "")).endswith((*REPLACED_CALLBACKS, TWO_STAGE))]
    trainer.update(max_steps=warmup + steps, max_epochs=None, limit_val_batches=0, num_sanity_val_steps=0,
                   logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(sweep.cpus_per_trial)))
    try:
        with tempfile.TemporaryDirectory() as folder:
            trainer["default_root_dir"] = folder
            path = Path(folder) / "config.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            clock = StepClock(warmup)
            with quiet():
                cli = cli_from_config(path)
                cli.trainer.callbacks.append(clock)
                cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            if not clock.steps or clock.first is None:
                raise SweepError(f"timing {stage.key}: no step after the {warmup} warm-up step(s) ran (the run has "
                                 f"fewer batches?): lower --time-steps or state --step-seconds")
            val_s = test_s = 0.0
            if validate:
                cli.trainer.limit_val_batches = 1.0
                started = time.perf_counter()
                with quiet():
                    cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
                val_s = time.perf_counter() - started
                started = time.perf_counter()
                with quiet():
                    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
                test_s = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return Timing(clock.seconds_per_token() * _epoch_tokens(cli.datamodule), clock.first - clock.started, val_s,
                  test_s)
