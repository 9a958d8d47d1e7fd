"""Per-strategy figures of our loop alone: throughput, memory, optimizer and checkpoint bytes; the feature cache;
time per epoch against data size and length.

These runs time one loop at a time (``repeats`` epochs over the same ``warmup + steps`` batches, median over the
epochs): absolute figures for one machine. Ratios between loops come from :mod:`benchmarks.interleave`, which
alternates them.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L

from benchmarks.common import Result, Settings, Workload, progress
from benchmarks.memory import optimizer_state_bytes
from benchmarks.timing import PeakMemory, StepTimes, eval_rate, file_bytes, samples_per_s
from pet_lightning import PETModule
from pet_lightning.data import GlueDataModule
from pet_lightning.strategies import STRATEGIES

# (row, strategy name, settings, note)
STRATEGY_ROWS: list[tuple[str, str, dict[str, Any], str]] = [
    ("full", "full", {}, ""),
    ("frozen", "frozen", {}, "features cached (default)"),
    ("frozen, no cache", "frozen", {}, "cache_features=False"),
    ("bitfit", "bitfit", {}, ""),
    ("layernorm", "layernorm", {}, ""),
    ("top_k_layers (k=2)", "top_k_layers", {"k": 2}, ""),
    ("lora", "lora", {}, ""),
    ("adapter", "adapter", {}, ""),
    ("prefix", "prefix", {}, ""),
    ("ia3", "ia3", {}, ""),
    ("EH-FT stage 1 (lora)", "lora", {}, "TwoStageTraining callback"),
]


def lightning_trainer(settings: Settings, callbacks: list[L.Callback], **kwargs: Any) -> L.Trainer:
    return L.Trainer(
        accelerator=settings.accelerator, devices=1, precision=settings.precision, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=callbacks, **kwargs,
    )


def run_ours(
    settings: Settings, work: Workload, strategy: str, options: dict[str, Any], *, cache: bool = True,
    two_stage: bool = False, evaluate: bool = True,
) -> Result:
    """PETModule + lightning.Trainer on the fixed batches; then validation throughput and checkpoint size."""
    per_epoch = settings.warmup + settings.steps
    timer = StepTimes(settings.accelerator)
    callbacks: list[L.Callback] = [timer]
    if two_stage:
        from pet_lightning.callbacks.two_stage import TwoStageTraining

        callbacks.append(TwoStageTraining(stage1_epochs=settings.repeats, log_stage=False))
    with PeakMemory(settings.accelerator) as memory, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = PETModule(
            backbone=settings.backbone, strategy={"name": strategy, **options},
            learning_rate=settings.learning_rate, init_seed=0, cache_features=None if cache else False,
        )
        trainer = lightning_trainer(settings, callbacks, max_epochs=settings.repeats, limit_val_batches=0)
        trainer.fit(module, train_dataloaders=work.train_loader(per_epoch))
    result = Result(peak_mb=memory.mb, trainable=module.report.trainable)
    rates = samples_per_s(timer.train, timer.train_sizes, settings.warmup, per_epoch)
    result.train_sps_repeats = rates
    result.train_sps = statistics.median(rates)
    result.step_s = settings.batch_size / result.train_sps
    result.optimizer_bytes = optimizer_state_bytes(trainer.optimizers[0])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.ckpt"
        trainer.save_checkpoint(path)
        result.checkpoint_bytes = file_bytes(path)
    if evaluate:
        loader = work.eval_loader()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(settings.repeats):
                lightning_trainer(settings, [timer]).validate(module, dataloaders=loader, verbose=False)
        result.eval_sps = eval_rate(timer)
    return result


def run_strategies(settings: Settings, work: Workload, rows: list[tuple[str, str, dict[str, Any], str]]
                   ) -> dict[str, Result]:
    """Every registered row of the table, timed one after the other."""
    results: dict[str, Result] = {}
    for label, strategy, options, _ in rows:
        results[label] = run_ours(
            settings, work, strategy, options, cache="no cache" not in label, two_stage="EH-FT" in label
        )
        progress(f"{label}: {results[label].train_sps:.1f} samples/s")
    return results


def memory_pass(settings: Settings, work: Workload, rows: list[tuple[str, str, dict[str, Any], str]],
                results: dict[str, Result]) -> None:
    """Peak memory of one short run per row (after all timed runs; see :func:`benchmarks.timing.exact_rss_mode`)."""
    short = Settings(**{**asdict(settings), "warmup": 1, "steps": 1, "repeats": 1})
    for label, strategy, options, _ in rows:
        if label in results:
            cached = "no cache" not in label
            results[label].peak_mb = run_ours(short, work, strategy, options, cache=cached, evaluate=False).peak_mb


def run_cache(settings: Settings) -> dict[str, Any]:
    """Linear probing epochs with and without the feature cache (whole epochs, timed end to end)."""
    datamodule = GlueDataModule(
        task="rte", backbone=settings.backbone, max_length=settings.max_length, batch_size=settings.batch_size,
        order_seed=0, train_subset=settings.cache_examples,
    )
    epochs: dict[str, list[float]] = {}
    for label, cache, count in (("cached", None, settings.cache_epochs), ("uncached", False, 2)):
        timer = StepTimes(settings.accelerator)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = PETModule(
                backbone=settings.backbone, strategy="frozen", learning_rate=1e-3, init_seed=0, cache_features=cache
            )
            trainer = lightning_trainer(settings, [timer], max_epochs=count, limit_val_batches=0)
            trainer.fit(module, datamodule=datamodule)
        epochs[label] = [end - start for start, end in timer.epochs]
    first, later = epochs["cached"][0], statistics.median(epochs["cached"][1:])
    uncached = statistics.median(epochs["uncached"])
    return {"examples": settings.cache_examples, "cached_first_s": first, "cached_later_s": later,
            "uncached_s": uncached, "speedup": uncached / later}


def run_scaling(settings: Settings) -> list[dict[str, Any]]:
    """Time per epoch vs training-set size and maximum length, extrapolated from timed steps.

    The step time is measured once per (strategy, maximum length) on the first batches of the shuffled RTE
    training set; an epoch of N examples is ceil(N / batch size) such steps (RTE has 2490 training examples).
    """
    rows = []
    lengths = sorted(set(settings.scaling_lengths) | {settings.max_length})
    local = Settings(**{**asdict(settings), "steps": settings.scaling_steps, "warmup": 1, "repeats": 1})
    for strategy in ("full", "bitfit"):
        if strategy not in STRATEGIES or (settings.strategies and strategy not in settings.strategies):
            continue
        for length in lengths:
            step_s = run_ours(local, Workload(settings, max_length=length), strategy, {}, evaluate=False).step_s
            sizes = settings.scaling_sizes if length == settings.max_length else (2490,)
            for size in sizes:
                rows.append({"strategy": strategy, "examples": size, "max_length": length, "step_s": step_s,
                             "epoch_s": math.ceil(size / settings.batch_size) * step_s})
    return rows
