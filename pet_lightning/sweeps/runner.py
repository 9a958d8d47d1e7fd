"""``python cli.py sweep``: the sweep's runs as Ray Tune trials, on this machine or on a Ray cluster.

With no ``--address`` (nor ``address:`` in the sweep file, nor ``RAY_ADDRESS``) the command starts a local Ray
instance itself and stops it at the end. One trial per planned run, named by its run id, holding
``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs; at most ``max_concurrent_trials`` at once. A trial that fails
is restarted by Ray from its last epoch checkpoint up to ``max_failures`` times, then recorded as failed.

Rerunning the same command resumes: records that finished runs left behind are collected, the Ray experiment of
the same plan is restored (``Tuner.restore``: interrupted runs continue from their last epoch) and runs with an
``ok`` record are never trained again.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pet_lightning.paths import from_start, pin_environment, start_dir
from pet_lightning.sweeps.plan import RunSpec, SweepConfig, SweepError, plan_digest, plan_runs, select_runs
from pet_lightning.sweeps.records import adopt_reused_records, finished_ids, load_results, recover_records
from pet_lightning.sweeps.resolved import base_notes, settings_line
from pet_lightning.sweeps.storage import check_storage, mark_storage, storage_filesystem, storage_join, storage_root

CONNECT_TIMEOUT_S = 10.0
LOCAL = "local"


def resolve_address(flag: str | None, sweep: SweepConfig) -> str:
    """``--address`` > the sweep file's ``address`` > ``RAY_ADDRESS`` > a new local instance."""
    return flag or sweep.address or os.environ.get("RAY_ADDRESS") or LOCAL


def connect(address: str, sweep: SweepConfig) -> None:
    """Start or join Ray; a cluster that cannot be reached is a one-line error well within 30 s."""
    import ray

    if address != LOCAL and address != "auto" and "://" not in address:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise SweepError(f"--address {address!r}: use 'auto', '<head host>:<port>' (e.g. 10.0.0.1:6379) or leave "
                             "it out to run on this machine")
        try:
            with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
                pass
        except OSError as err:
            raise SweepError(f"cannot reach a Ray cluster at {address} ({err}): start one there with `ray start "
                             "--head`, fix --address / RAY_ADDRESS, or leave --address out to run locally") from None
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    if address == LOCAL:
        # The embedded default: nothing to install or start first, and no dashboard to pay for on a laptop.
        kwargs.update(include_dashboard=False)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, TimeoutError) as err:
        raise SweepError(f"cannot join the Ray cluster at {address} ({str(err).splitlines()[0]}): start one with "
                         "`ray start --head` or leave --address out to run locally") from None
    # Our FAILED / retrying lines (with the path to the trial's error.txt) replace Tune's tracebacks on the console.
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    gpus = ray.cluster_resources().get("GPU", 0)
    if sweep.gpus_per_trial > 0 and gpus == 0:
        ray.shutdown()
        raise SweepError(f"gpus_per_trial={sweep.gpus_per_trial} but Ray sees no GPU on {address}: set "
                         "gpus_per_trial: 0 (or --gpus-per-trial 0), or run where a GPU is visible")


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Ray Tune points SIGINT and SIGUSR1 at its run and never puts SIGUSR1 back (SIGINT only once it fired): after a
    sweep run in-process (a notebook, a script that then trains), Ctrl+C would be swallowed and Lightning would not
    install its SLURM requeue handler, which it skips where one is set. Both are restored once the run ends."""
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, getattr(signal, "SIGUSR1", None)) if sig}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in kept.items():
                if handler is not None:
                    signal.signal(sig, handler)


def trial_name(trial) -> str:
    return trial.config["run_id"]


def for_trial(run: RunSpec) -> RunSpec:
    """``run`` as a trial receives it: a relative ``data_dir`` made absolute here, since Ray starts the trial's worker
    in a folder of its own. Its id and hashes keep the path as the sweep file wrote it."""
    init_args = run.config.get("data", {}).get("init_args", {})
    if not init_args.get("data_dir"):
        return run
    config = {**run.config, "data": {**run.config["data"], "init_args": {**init_args}}}
    config["data"]["init_args"]["data_dir"] = from_start(init_args["data_dir"])
    return dataclasses.replace(run, config=config)


def build_tuner(sweep: SweepConfig, runs: list, todo: list, experiment: str, callbacks: list):
    """A new Tuner over the unfinished runs, or the restored one of the same plan (interrupted runs resume)."""
    from ray import tune

    from pet_lightning.sweeps.trainable import sweep_trial

    resources = {"cpu": sweep.cpus_per_trial, "gpu": sweep.gpus_per_trial}
    storage = storage_root(sweep)
    path = storage_join(storage, experiment)
    mark = (path, mark_storage(path))
    trainable = tune.with_resources(
        tune.with_parameters(sweep_trial, sweep=sweep, runs={run.run_id: for_trial(run) for run in runs},
                             storage_mark=mark), resources
    )
    if tune.Tuner.can_restore(path):
        # Errored trials get their retries again, from their last checkpoint: a rerun is how one retries failures.
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True), True
    tuner = tune.Tuner(
        trainable,
        param_space={"run_id": tune.grid_search([run.run_id for run in todo]), "cwd": str(start_dir())},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=sweep.max_concurrent_trials, trial_name_creator=trial_name,
            trial_dirname_creator=trial_name, reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=experiment, storage_path=storage, verbose=0, callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
            # The last epoch checkpoint is all a resume needs; older ones only fill the disk.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    return tuner, False


def run_sweep(config_path: str, filters: dict[str, list[str]] | None = None, overrides: dict[str, Any] | None = None,
              address: str | None = None, scale: str | None = None) -> int:
    """Run (or resume) a sweep (one ``scale`` of a study file); returns a process exit code (0 when every selected
    run has an ``ok`` record)."""
    sweep = SweepConfig.from_file(config_path, scale)
    for key, value in (overrides or {}).items():
        setattr(sweep, key, value)
    sweep.check_engine()
    runs = select_runs(plan_runs(sweep), filters or {})
    print_base_notes(sweep)
    Path(sweep.out).mkdir(parents=True, exist_ok=True)
    recovered = recover_records(sweep, runs)
    reused = adopt_reused_records(sweep, runs)
    sources = ", ".join(sweep.reuse_from)
    done = finished_ids(sweep.results_path)
    todo = [run for run in runs if run.run_id not in done]
    print(f"[{sweep.name}] {len(runs)} runs, {len(runs) - len(todo)} already finished"
          f"{f' ({len(recovered)} recovered from run folders)' if recovered else ''}"
          f"{f' ({len(reused)} reused from {sources})' if reused else ''}, {len(todo)} to do; "
          f"results: {sweep.results_path}", flush=True)
    if sweep.protocol == "standard":
        print(f"[{sweep.name}] WARNING: protocol standard selects and reports on the same dev set; every result is "
              "marked leaky. Use dev_split or train_holdout for honest numbers.", file=sys.stderr, flush=True)
    if not todo:
        return 0
    import ray
    from ray import tune

    from pet_lightning.sweeps.progress import SweepProgress, SweepRecorder, set_active

    # Trial workers keep the driver's working folder (relative paths in run configs mean the same files).
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    # Forced state snapshots after each epoch checkpoint are what a kill -9 resume needs; Ray need not warn of them.
    # The legacy console output honours verbose=0 fully (the new one still prints its configuration box).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray's workers inherit this environment: a relative PET_DATA_DIR set since import must not reach them as such.
    pin_environment()
    check_storage(storage_root(sweep))
    target = resolve_address(address, sweep)
    connect(target, sweep)
    progress = SweepProgress(sweep, runs, todo, done)
    set_active(progress)
    try:
        experiment = f"tune-{sweep.name}-{plan_digest(sweep, runs)}"
        tuner, restored = build_tuner(sweep, runs, todo, experiment, [SweepRecorder()])
        cluster = "a local Ray instance" if target == LOCAL else f"the Ray cluster at {target}"
        print(f"[{sweep.name}] {'restored' if restored else 'started'} experiment {experiment} on {cluster} "
              f"({ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs; "
              f"{sweep.cpus_per_trial:g} CPU + {sweep.gpus_per_trial:g} GPU per run)", flush=True)
        try:
            with _signal_handlers_kept():
                tuner.fit()
        except tune.TuneError as err:
            raise SweepError(f"Ray Tune stopped the sweep: {str(err).splitlines()[0]}") from None
    finally:
        set_active(None)
        # Stops the local instance; on a cluster only this driver leaves (the nodes and their other jobs stay).
        ray.shutdown()
    progress.print_line(force=True)
    records = {r["run_id"]: r for r in load_results(sweep.results_path, include_failed=True)}
    failed = [run.run_id for run in runs if records.get(run.run_id, {}).get("status") == "failed"
              and run.run_id not in finished_ids(sweep.results_path)]
    missing = [run.run_id for run in runs if run.run_id not in records]
    if failed:
        first = records[failed[0]].get("error", "")
        print(f"[{sweep.name}] {len(failed)} run(s) failed after their retries: {', '.join(failed)} (first error: "
              f"{first}); fix the cause and run the same command again to retry them", file=sys.stderr, flush=True)
    if missing:
        print(f"[{sweep.name}] {len(missing)} run(s) have no record: {', '.join(missing)}; run the same command "
              "again", file=sys.stderr, flush=True)
    if not sweep.keep_checkpoints:
        _drop_epoch_checkpoints(sweep, runs, experiment)
    return 1 if failed or missing else 0


def _drop_epoch_checkpoints(sweep: SweepConfig, runs: list, experiment: str) -> None:
    """Epoch checkpoints of finished runs are only for resuming: remove them, wherever ``storage_path`` is."""
    import pyarrow
    import pyarrow.fs

    from pet_lightning.sweeps.trainable import TUNE_RESUME_FOLDER

    finished = finished_ids(sweep.results_path)
    done = [run.run_id for run in runs if run.run_id in finished]
    try:
        filesystem, root = storage_filesystem(storage_root(sweep))
    except (pyarrow.ArrowException, OSError):
        return
    for run_id in done:
        shutil.rmtree(sweep.run_dir(run_id) / TUNE_RESUME_FOLDER, ignore_errors=True)
        found = pyarrow.fs.FileSelector(f"{root.rstrip('/')}/{experiment}/{run_id}", allow_not_found=True)
        try:
            for info in filesystem.get_file_info(found):
                if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_"):
                    filesystem.delete_dir(info.path)
        except (pyarrow.ArrowException, OSError):
            continue  # disk space, not results: a store that refuses the deletion keeps them


def status(config_path: str, filters: dict[str, list[str]], scale: str | None = None) -> int:
    """Print each run and whether it is finished, failed or pending (``--dry-run``)."""
    sweep = SweepConfig.from_file(config_path, scale)
    records = {}
    if sweep.results_path.exists():
        records = {r["run_id"]: r for r in load_results(sweep.results_path, include_failed=True)}
    runs = select_runs(plan_runs(sweep), filters)
    print_base_notes(sweep)
    for run in runs:
        state = {"ok": "finished", "failed": "failed"}.get(records.get(run.run_id, {}).get("status"), "pending")
        print(f"{state:8s} {run.run_id} init_seed={run.init_seed} order_seed={run.order_seed} "
              f"{settings_line(run.config)}")
    return 0


def print_base_notes(sweep: SweepConfig) -> None:
    """Say where method config files replace ``base`` values (the documented order, made visible)."""
    for note in base_notes(sweep):
        print(f"[{sweep.name}] note: {note}", file=sys.stderr, flush=True)


ENGINE_FLAGS = {"cpus_per_trial": float, "gpus_per_trial": float, "max_concurrent_trials": int, "max_failures": int,
                "precision": str}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="sweep file, e.g. configs/revisiting/sweep_cb.yaml")
    parser.add_argument("--scale", help="a scale the study file defines (cpu, paper, EH-FT paper_leaky...; "
                        "default: its default_scale)")
    parser.add_argument("--address", help="Ray cluster: 'auto' or '<head>:6379' (default: a local Ray instance)")
    for key, kind in ENGINE_FLAGS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, help=f"overrides the sweep file's {key}")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their state, run nothing")
    for key in ("task", "method", "seed", "seed-mode"):
        parser.add_argument(f"--{key}", action="append", default=[],
                            help=f"only runs with this {key} (repeatable; comma lists allowed)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    filters = {
        key: [v for value in getattr(args, key) for v in str(value).split(",") if v]
        for key in ("task", "method", "seed", "seed_mode")
    }
    overrides = {key: getattr(args, key) for key in ENGINE_FLAGS if getattr(args, key) is not None}
    try:
        if args.dry_run:
            return status(args.config, filters, args.scale)
        return run_sweep(args.config, filters, overrides, address=args.address, scale=args.scale)
    except ValueError as err:  # our errors (PetLightningError) and a bad value a library refuses
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
