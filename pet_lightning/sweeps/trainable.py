"""One run of a sweep: a LightningCLI fit that checkpoints every epoch, resumes, and returns its results record.

:func:`execute` trains one :class:`~pet_lightning.sweeps.plan.RunSpec` in this process: it writes the run's
``config.yaml``, builds :class:`~pet_lightning.lightning_cli.PETLightningCLI` from it, fits (from ``resume_from`` if
given), evaluates the *selected* checkpoint once on the reporting split and returns the record. Two checkpoints
exist per run and are separate files:

* the kept checkpoint (``<run_dir>/checkpoints/best-*.ckpt``): the epoch that is best on the selection split,
  weights only, what the reporting split is evaluated at;
* the resume checkpoint (``epoch.ckpt``, written at the end of every epoch by :class:`EpochCheckpoint`, less often
  when saving it is slow next to an epoch): the full
  trainer state (optimizer, scheduler, loop progress, callback state such as the two-stage stage, early stopping
  and the kept checkpoint's bookkeeping, the dropout RNG stream), handed to Ray Tune as the trial's checkpoint.

The test of the kept checkpoint also writes ``<run_dir>/predictions.csv`` (:class:`ReportPredictions`: the selected
model's prediction for each reported example); the record names it, the config and the kept checkpoint relative to
the sweep's out, with the backbone and the run's provenance (commit, package versions, machine).

:func:`sweep_trial` is the Ray Tune function trainable around it: it resumes from ``tune.get_checkpoint()`` when
Ray restarts a trial, and ends by reporting the record (as JSON) for the driver to write.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.callbacks import Checkpoint

from pet_lightning.callbacks.report_predictions import PREDICTIONS_FILE, ReportPredictions
from pet_lightning.callbacks.resume import lightning_resume_warnings_ignored
from pet_lightning.sweeps.plan import SELECTION_CHECKPOINT, RunSpec, SweepConfig, full_config
from pet_lightning.sweeps.records import RECORD_FILE, ok_record, relative_to_out
from pet_lightning.sweeps.run_log import PROGRESS_FILE, RunLog, log_event
from pet_lightning.sweeps.storage import check_storage_seen, store_run_folder, stored_run_folder

RESUME_FILE = "epoch.ckpt"
# Where a restarted trial's checkpoint is copied out of Ray's storage (ResumeCheckpoints owns <run_dir>/resume).
TUNE_RESUME_FOLDER = "tune_resume"

# An epoch checkpoint is skipped while the last one took SLOW_SAVE_S or more and was written less than
# SAVE_SPACING times its own duration ago: checkpoint I/O then costs at most about 1/SAVE_SPACING of the run (EH-FT's
# paper scale: 400 epochs of a few steps, GBs of state each) and a failure loses at most that much training.
SLOW_SAVE_S = 1.0
SAVE_SPACING = 10.0


class EpochCheckpoint(Checkpoint):
    """Writes the full trainer state at the end of a training epoch and hands the file to ``report``.

    A :class:`~lightning.pytorch.callbacks.Checkpoint` subclass so that Lightning calls it with the monitoring
    callbacks, after early stopping and the kept checkpoint have taken in this epoch's validation: the state it
    saves already holds their updates, and a resumed run goes on exactly as an uninterrupted one.

    Every epoch, unless saving has become slow next to training (see :data:`SLOW_SAVE_S`): then epochs in between
    are reported without a checkpoint, and a restarted trial replays them from the last one (exactly, as any
    resume).

    Args:
        report: Called with the epoch's metrics and the folder holding ``epoch.ckpt`` (valid during the call), or
            None for an epoch without a checkpoint.
    """

    def __init__(self, report: Callable[[dict[str, Any], Path | None], None]):
        self.report = report
        self._last_save: tuple[float, float] | None = None  # (finished at, took seconds)

    def due(self, now: float) -> bool:
        if self._last_save is None:
            return True
        finished, took = self._last_save
        return took < SLOW_SAVE_S or now - finished >= SAVE_SPACING * took

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if value.numel() == 1}
        metrics.update(epoch=trainer.current_epoch, step=trainer.global_step)
        started = time.perf_counter()
        if not self.due(started):
            self.report(metrics, None)
            return
        with tempfile.TemporaryDirectory(prefix="pet-epoch-") as folder:
            trainer.save_checkpoint(Path(folder) / RESUME_FILE)
            self._last_save = (time.perf_counter(), time.perf_counter() - started)
            self.report(metrics, Path(folder))


def _placement(config: dict[str, Any], gpus_per_trial: float) -> None:
    """The trainer's device follows the trial's reservation: one (possibly shared) GPU, or the CPU.

    One device and strategy ``auto`` always: a ``strategy: ddp`` merged in from a preset would start a one-process
    process group per trial (and concurrent trials would collide on ``MASTER_PORT``).
    """
    trainer = config.setdefault("trainer", {})
    trainer["accelerator"] = "gpu" if gpus_per_trial > 0 else "cpu"
    trainer["devices"] = 1
    trainer["strategy"] = "auto"


# Share of a GPU's memory a trial may fill, of the share of the GPU it holds: the rest is the CUDA context's and
# fragmentation's headroom.
GPU_MEMORY_HEADROOM = 0.95


def cap_gpu_memory(gpus_per_trial: float) -> float | None:
    """Cap this process's CUDA caching allocator at its trial's share of the GPU; returns the fraction set.

    Ray books fractions of a GPU but does not enforce them: without a cap one trial's allocator grows until the
    others sharing the GPU fail with out-of-memory. Whole GPUs (and CPU trials) are left uncapped.
    """
    import torch

    if not 0 < gpus_per_trial < 1 or not torch.cuda.is_available():
        return None
    fraction = GPU_MEMORY_HEADROOM * gpus_per_trial
    torch.cuda.set_per_process_memory_fraction(fraction)
    return fraction


def release_gpu_memory() -> None:
    """Hand a finished trial's cached CUDA blocks back: Ray reuses the worker process for the next trial."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def execute(
    sweep: SweepConfig,
    run: RunSpec,
    *,
    threads: int,
    gpus_per_trial: float = 0.0,
    resume_from: Path | None = None,
    report: Callable[[dict[str, Any], Path | None], None] | None = None,
    node: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train one run (resuming from ``resume_from``), test its kept checkpoint, write and return its record.

    Args:
        threads: Torch threads of the run (the CPUs its trial holds).
        report: Receives every epoch's metrics and resume checkpoint (Ray Tune's ``report`` in a trial);
            None writes no resume checkpoints.
        node: The Ray node training it (``id``, ``ip``), kept in the record as ``node``.
    """
    import torch

    run_dir = sweep.run_dir(run.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = full_config(sweep, run, run_dir)
    _placement(config, gpus_per_trial)
    config_path = run_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    torch.set_num_threads(threads)
    cap_gpu_memory(gpus_per_trial)
    start = time.perf_counter()
    cli, selection = build_run(config_path, run_dir, report)
    try:
        best_path = fit_and_select(cli, selection, run.run_id, sweep.select["monitor"], resume_from)
        steps, epochs = cli.trainer.global_step, cli.trainer.current_epoch
        # The selected model's per-example predictions on the reported split, beside the record.
        cli.trainer.callbacks.append(ReportPredictions(run_dir / PREDICTIONS_FILE))
        tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best_path, verbose=False)
        record = record_of(sweep, run, cli, config, selection, tested, steps, epochs, start)
        if node is not None:
            record["node"] = node
        for logger in cli.trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                summary = {f"sweep/{k}": v for k, v in record.items() if _scalar(v)}
                summary.update(_distance_summary(record["distance"]))
                logger.experiment.summary.update(summary)
        if not sweep.keep_checkpoints:
            Path(best_path).unlink(missing_ok=True)
        stored_at = stored_run_folder(sweep, run.run_id)
        if stored_at is not None:
            record["stored_at"] = stored_at
        log_event(run_dir / PROGRESS_FILE, event="done", step=steps)
        if stored_at is not None:
            # Before record.json: a trial that dies while copying has no record, so it trains again, never lost.
            store_run_folder(run_dir, stored_at)
        _write_json(run_dir / RECORD_FILE, record)
        if stored_at is not None:
            store_run_folder(run_dir, stored_at, names=[RECORD_FILE])
        return record
    finally:
        _finish_wandb(cli.trainer)
        del cli, selection
        gc.collect()
        release_gpu_memory()


def build_run(config_path: Path, run_dir: Path, report: Callable[[dict[str, Any], Path | None], None] | None):
    """The run's CLI (trainer, model, data module) built from its config file, with the sweep's callbacks appended,
    and its selection checkpoint."""
    from pet_lightning.lightning_cli import cli_from_config

    with warnings.catch_warnings():
        # The run gets its config file, not the sweep's argv: LightningCLI's warning about `args` is not for it.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        cli = cli_from_config(config_path)
    trainer = cli.trainer
    module_name, class_name = SELECTION_CHECKPOINT.rsplit(".", 1)
    selection_type = getattr(importlib.import_module(module_name), class_name)
    selection = next(cb for cb in trainer.callbacks if type(cb) is selection_type)
    # Appended after the trainer sorted its callbacks: these run after early stopping and the kept checkpoint.
    if report is not None:
        trainer.callbacks.append(EpochCheckpoint(report))
    trainer.callbacks.append(RunLog(run_dir / PROGRESS_FILE))
    return cli, selection


def fit_and_select(cli, selection, run_id: str, monitor: str, resume_from: Path | None) -> str:
    """Fit the run (from ``resume_from`` if given); returns the kept checkpoint, the one that is best on the
    selection split."""
    with lightning_resume_warnings_ignored():
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(resume_from) if resume_from else None)
    if not selection.best_model_path:
        raise RuntimeError(
            f"run {run_id} kept no checkpoint: {monitor} was never logged; make sure validation runs "
            "(trainer.limit_val_batches > 0, check_val_every_n_epoch <= max_epochs)"
        )
    return selection.best_model_path


def record_of(sweep: SweepConfig, run: RunSpec, cli, config: dict[str, Any], selection, tested, steps: int,
              epochs: int, start: float) -> dict[str, Any]:
    """The run's record: what it measured on the reporting split at the kept checkpoint (whose weights ``cli.model``
    holds after the test), its cost since ``start``, and the paths of its files relative to the sweep's out."""
    model, best_path, run_dir = cli.model, selection.best_model_path, sweep.run_dir(run.run_id)
    record = ok_record(sweep, run, **_measured(model, cli.datamodule, tested, selection, steps, epochs))
    record["distance"] = _selected_distance(model)
    record["wall_s"] = round(time.perf_counter() - start, 1)
    backbone = getattr(model, "backbone_name", None) or (config.get("model") or {}).get("backbone", "?")
    record["backbone"] = str(backbone)
    # Paths relative to the sweep's out (the folder of results.jsonl): records name no machine's folders.
    record["config_path"] = relative_to_out(run_dir / "config.yaml", sweep.out)
    record["checkpoint"] = relative_to_out(best_path, sweep.out) if sweep.keep_checkpoints else None
    record["predictions"] = relative_to_out(run_dir / PREDICTIONS_FILE, sweep.out)
    return record


def _measured(model, datamodule, tested, selection, steps: int, epochs: int) -> dict[str, Any]:
    import re

    plan = datamodule.plan
    report = {key.removeprefix("test/"): float(value) for key, value in tested[0].items() if key.startswith("test/")}
    match = re.search(r"epoch=(\d+)-step=(\d+)", Path(selection.best_model_path).name)
    return {
        "strategy": model.strategy.name,
        "leaky": bool(plan.leaky),
        "split": plan.description,
        "train_examples": len(plan.train),
        "selection_examples": sum(len(rows) for rows in plan.selection.values()),
        "report_examples": sum(len(rows) for rows in plan.report.values()),
        "best_selection": float(selection.best_model_score),
        "best_epoch": int(match.group(1)) if match else None,
        "best_step": int(match.group(2)) if match else None,
        "steps": steps,
        "epochs": epochs,
        "report": report,
        "trainable": model.report.trainable,
        "trainable_pct": round(model.report.percent, 6),
    }


def _selected_distance(model) -> dict[str, Any]:
    """L2 distance of the *tested* (selected) model's backbone from the pretrained weights: total, per layer, rest.

    ``trainer.test(ckpt_path=best)`` left the selected checkpoint's weights in ``model``, so this is the distance of
    the model the record reports, not of the last epoch's.
    """
    from pet_lightning.callbacks.distance import backbone_distance

    distance = backbone_distance(model.model, model.pretrained_model())
    return {"total": distance.total, "rest": distance.rest,
            "layers": {str(index): value for index, value in sorted(distance.layers.items())}}


def _distance_summary(distance: dict[str, Any]) -> dict[str, float]:
    """The record's distance as flat W&B summary keys (``distance/total``, ``distance/rest``, ``distance/layer_i``)."""
    flat = {"distance/total": distance["total"], "distance/rest": distance["rest"]}
    flat.update({f"distance/layer_{index}": value for index, value in distance["layers"].items()})
    return flat


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool))


def _finish_wandb(trainer) -> None:
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish()


def trial_threads(sweep: SweepConfig) -> int:
    return max(1, int(sweep.cpus_per_trial))


def sweep_trial(config: dict[str, Any], sweep: SweepConfig, runs: dict[str, RunSpec],
                storage_mark: tuple[str, str] | None = None) -> None:
    """Ray Tune function trainable: one run per trial, resumed from the trial's last epoch checkpoint.
    ``storage_mark``: (the experiment's storage folder, the driver's mark in it), checked before training."""
    import ray
    from ray import tune

    run = runs[config["run_id"]]
    # Which cluster node trains this attempt (several nodes may share a host name): in the run log and the record.
    node = {"id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address()}
    if 0 < sweep.gpus_per_trial < 1:
        # Read when CUDA starts in this worker: freed blocks go back to the GPU instead of fragmenting the trial's
        # share (a user's own setting wins).
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    log_event(sweep.run_dir(run.run_id) / PROGRESS_FILE, event="trial", node=node["id"])
    if storage_mark is not None:
        check_storage_seen(*storage_mark, node=node["ip"])
    if config.get("cwd") and Path(config["cwd"]).is_dir():
        # Relative paths in run configs mean the folder the sweep was started from, on every worker.
        os.chdir(config["cwd"])
    stored = sweep.run_dir(run.run_id) / RECORD_FILE
    if stored.is_file():
        # Finished before (its record may not have reached results.jsonl): never train it again.
        tune.report({"record_json": stored.read_text(encoding="utf-8")})
        return
    resume_from = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        # Copy out of the trial storage: as_directory() may be a temporary download that goes away.
        resume_from = sweep.run_dir(run.run_id) / TUNE_RESUME_FOLDER / RESUME_FILE
        resume_from.parent.mkdir(parents=True, exist_ok=True)
        with checkpoint.as_directory() as folder:
            shutil.copyfile(Path(folder) / RESUME_FILE, resume_from)

    def report(metrics: dict[str, Any], folder: Path | None) -> None:
        checkpoint = None if folder is None else tune.Checkpoint.from_directory(str(folder))
        tune.report(metrics, checkpoint=checkpoint)

    record = execute(sweep, run, threads=trial_threads(sweep), gpus_per_trial=sweep.gpus_per_trial,
                     resume_from=resume_from, report=report, node=node)
    tune.report({"record_json": json.dumps(record, sort_keys=True)})
