"""Multi-seed sweeps: tasks x methods x seeds, resumable, one JSON line per finished run.

``python cli.py sweep --config configs/revisiting/sweep_<x>.yaml`` runs every combination of the sweep's tasks,
methods, seed modes and seeds (20 seeds by default, the study's). Each run:

* is a LightningCLI run built from a merged config (defaults < ``base`` < the method's config files < the method's
  ``overrides`` < ``task_overrides``), written to ``<out>/runs/<run_id>/config.yaml`` so that
  ``python cli.py fit --config <that file>`` repeats it;
* keeps the checkpoint that is best on the *selection* split (``val/loss`` or ``val/headline``, with early
  stopping on the same metric), then evaluates that checkpoint once on the *reporting* split
  (``trainer.test(ckpt_path="best")``); the reported figure is never a maximum over the reporting split;
* logs to W&B with ``group`` = sweep name and ``job_type`` = method (``WANDB_MODE=offline`` works without
  network), and to CSV;
* appends one JSON line to ``<out>/results.jsonl`` under a file lock, by writing a new file and renaming it over
  the old one, so the file is never left half-written even if the process is killed.

Runs already in the results file are skipped, so a killed sweep resumes where it stopped. Workers (processes on
this machine or on other machines sharing ``<out>``) claim runs with lock files under ``<out>/claims``; a claim
whose process died (same host) or whose heartbeat stopped (any host) is taken over.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import gc
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pet_lightning.seeds import SEED_MODES, STUDY_SEEDS, resolve_seeds

RESULTS_FILE = "results.jsonl"
SELECT_MODES = {"val/loss": "min", "val/headline": "max"}
HEARTBEAT_S = 30.0
DATA_MODULES = {"glue": "pet_lightning.data.GlueDataModule", "superglue": "pet_lightning.data.SuperGlueDataModule"}
# Trainer callbacks that the sweep replaces with its own (selection must happen on the selection split).
REPLACED_CALLBACKS = ("ModelCheckpoint", "EarlyStopping", "RichProgressBar", "TQDMProgressBar")

DEFAULT_RUN_CONFIG: dict[str, Any] = {
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "precision": "bf16-mixed",
        "max_epochs": 10,
        "log_every_n_steps": 10,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    },
    "model": {"backbone": "minilm"},
}


class SweepError(ValueError):
    """A sweep file or results file that cannot be used; the message names the fix."""


# ------------------------------------------------------------------------------------------------ config files
class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-5`` as a string; configs mean a float (as in YAML 1.2)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"config file {path} does not exist: fix the path (relative to {Path.cwd()})")
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SweepError(f"{path} holds a {type(data).__name__}, not a mapping of settings: fix the file")
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins, lists are replaced whole."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass
class MethodSpec:
    """One method of a sweep.

    Args:
        name: Label of the method in results and reports (and W&B ``job_type``).
        strategy: Strategy name or ``{"name": ..., **settings}``; defaults to ``name``.
        config: LightningCLI config files merged in order; ``{task}`` and ``{method}`` are filled in (e.g.
            ``configs/revisiting/{task}_{method}.yaml``).
        overrides: Settings merged over the config files (``{"model": {"learning_rate": 1e-3}}``).
        optional_config: Skip config files that do not exist instead of failing.
    """

    name: str
    strategy: str | dict[str, Any] | None = None
    config: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    optional_config: bool = False


@dataclass
class SweepConfig:
    """A sweep file.

    Args:
        name: Sweep name (W&B ``group``, results label).
        tasks: Task names.
        methods: Method name -> :class:`MethodSpec` settings (or a list of names).
        seeds: How many of the study's 20 seeds to use, or an explicit list.
        seed_modes: ``both`` (init and order seed = seed), ``init`` (vary init only), ``order`` (vary data order
            and dropout only); the last two give the weight-init vs. data-order table.
        fixed_seed: The seed held fixed in the ``init`` / ``order`` modes.
        protocol: Data protocol of every run (``dev_split``, ``train_holdout``; ``standard`` is leaky).
        select: ``monitor`` (``val/loss`` or ``val/headline``) and ``patience`` (early stopping, None = off).
        base: LightningCLI settings shared by every run.
        task_overrides: Task name -> settings merged last.
        out: Results folder; defaults to ``runs/sweeps/<name>``.
        workers: Parallel worker processes on this machine.
        threads: Torch threads per worker (None: the CPU count divided by ``workers``).
        wandb: W&B settings (``project``, ``tags``, ``entity``) or False for none.
        keep_checkpoints: Keep each run's best checkpoint after it is evaluated.
        stale_after_s: A claim whose heartbeat is older than this is taken over by another worker.
    """

    name: str
    tasks: list[str]
    methods: dict[str, MethodSpec]
    seeds: list[int] = field(default_factory=lambda: list(STUDY_SEEDS))
    seed_modes: list[str] = field(default_factory=lambda: ["both"])
    fixed_seed: int = STUDY_SEEDS[0]
    protocol: str = "dev_split"
    select: dict[str, Any] = field(default_factory=lambda: {"monitor": "val/loss", "patience": 10})
    base: dict[str, Any] = field(default_factory=dict)
    task_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: str = ""
    workers: int = 1
    threads: int | None = None
    wandb: dict[str, Any] | bool = field(default_factory=lambda: {"project": "pet-lightning"})
    keep_checkpoints: bool = False
    stale_after_s: float = 600.0

    def __post_init__(self) -> None:
        from pet_lightning.data.protocol import PROTOCOLS
        from pet_lightning.tasks import get_task

        if not self.tasks or not self.methods:
            raise SweepError(f"sweep {self.name!r} needs at least one task and one method: add `tasks` and `methods`")
        self.tasks = [get_task(task).name for task in self.tasks]
        if isinstance(self.seeds, int):
            if not 1 <= self.seeds <= len(STUDY_SEEDS):
                raise SweepError(f"seeds={self.seeds}: use 1..{len(STUDY_SEEDS)} study seeds or a list of seeds")
            self.seeds = list(STUDY_SEEDS[: self.seeds])
        self.seeds = [int(seed) for seed in self.seeds]
        if len(set(self.seeds)) != len(self.seeds):
            raise SweepError(f"seeds {self.seeds} repeat a seed: list each seed once")
        unknown = [mode for mode in self.seed_modes if mode not in SEED_MODES]
        if unknown:
            raise SweepError(f"unknown seed mode(s) {unknown}: choose from {', '.join(SEED_MODES)}")
        if self.protocol not in PROTOCOLS:
            raise SweepError(f"unknown protocol {self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        monitor = self.select.get("monitor", "val/loss")
        if monitor not in SELECT_MODES:
            raise SweepError(f"select.monitor={monitor!r}: choose one of {', '.join(SELECT_MODES)}")
        self.select = {"monitor": monitor, "patience": self.select.get("patience", 10)}
        if self.workers < 1:
            raise SweepError(f"workers={self.workers}: use at least one worker")
        self.out = self.out or f"runs/sweeps/{self.name}"

    @classmethod
    def from_file(cls, path: str | Path) -> SweepConfig:
        raw = load_yaml(path)
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(raw) - known)
        if extra:
            raise SweepError(f"{path}: unknown sweep setting(s) {extra}: the settings are {', '.join(sorted(known))}")
        if "name" not in raw:
            raw["name"] = Path(path).stem.removeprefix("sweep_")
        raw["methods"] = _parse_methods(raw.get("methods"), path)
        return cls(**raw)

    @property
    def results_path(self) -> Path:
        return Path(self.out) / RESULTS_FILE


def _parse_methods(methods: Any, path: str | Path) -> dict[str, MethodSpec]:
    if isinstance(methods, list):
        methods = {name: {} for name in methods}
    if not isinstance(methods, dict) or not methods:
        raise SweepError(f"{path}: `methods` must be a list of names or a mapping name -> settings")
    parsed = {}
    for name, settings in methods.items():
        settings = dict(settings or {})
        config = settings.pop("config", [])
        settings["config"] = [config] if isinstance(config, str) else list(config)
        try:
            parsed[name] = MethodSpec(name=name, **settings)
        except TypeError as err:
            raise SweepError(
                f"{path}: method {name!r}: {err}; use strategy, config, overrides, optional_config"
            ) from None
    return parsed


# ------------------------------------------------------------------------------------------------------ runs
@dataclass
class RunSpec:
    """One run of a sweep: its id, its seeds and its full LightningCLI config."""

    run_id: str
    task: str
    method: str
    seed: int
    seed_mode: str
    init_seed: int
    order_seed: int
    config: dict[str, Any]
    config_hash: str


def run_config(sweep: SweepConfig, task: str, method: MethodSpec) -> dict[str, Any]:
    """The merged LightningCLI config of (task, method), without seeds, loggers and selection callbacks."""
    from pet_lightning.tasks import get_task

    config = deep_merge(DEFAULT_RUN_CONFIG, sweep.base)
    config = deep_merge(config, {"model": {"strategy": method.strategy or method.name}})
    for template in method.config:
        path = Path(template.format(task=task, method=method.name))
        if not path.is_file() and method.optional_config:
            continue
        config = deep_merge(config, load_yaml(path))
    config = deep_merge(config, method.overrides)
    config = deep_merge(config, sweep.task_overrides.get(task, {}))
    data = config.setdefault("data", {})
    data.setdefault("class_path", DATA_MODULES[get_task(task).benchmark])
    data.setdefault("init_args", {}).update({"task": task, "protocol": sweep.protocol})
    # The model takes its task from the data (a CLI link); a method file that names one must not disagree.
    config["model"].pop("task", None)
    return config


def plan_runs(sweep: SweepConfig) -> list[RunSpec]:
    """Every run of the sweep, seed-major so that an interrupted sweep has whole seeds for every method."""
    configs = {(t, m): run_config(sweep, t, spec) for t in sweep.tasks for m, spec in sweep.methods.items()}
    runs = []
    for seed in sweep.seeds:
        for mode in sweep.seed_modes:
            for task in sweep.tasks:
                for method in sweep.methods:
                    config = configs[(task, method)]
                    init_seed, order_seed = resolve_seeds(seed, mode, sweep.fixed_seed)
                    digest = _hash({"config": config, "select": sweep.select, "init": init_seed, "order": order_seed})
                    runs.append(
                        RunSpec(
                            run_id=f"{task}.{method}.{mode}.{seed}.{digest}",
                            task=task, method=method, seed=seed, seed_mode=mode,
                            init_seed=init_seed, order_seed=order_seed, config=config, config_hash=digest,
                        )
                    )
    return runs


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def full_config(sweep: SweepConfig, run: RunSpec, run_dir: Path) -> dict[str, Any]:
    """The run's config with its seeds, loggers and selection callbacks: what ``config.yaml`` holds."""
    config = copy.deepcopy(run.config)
    config["seed_everything"] = run.order_seed
    config["model"]["init_seed"] = run.init_seed
    config["data"]["init_args"]["order_seed"] = run.order_seed
    trainer = config.setdefault("trainer", {})
    monitor, patience = sweep.select["monitor"], sweep.select["patience"]
    mode = SELECT_MODES[monitor]
    callbacks = [
        cb for cb in trainer.get("callbacks") or []
        if not str(cb.get("class_path", "")).endswith(REPLACED_CALLBACKS)
    ]
    callbacks.append(
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(run_dir / "checkpoints"), "filename": "best-{epoch}-{step}",
                          "monitor": monitor, "mode": mode, "save_top_k": 1, "save_weights_only": True},
        }
    )
    if patience is not None:
        callbacks.append(
            {
                "class_path": "lightning.pytorch.callbacks.EarlyStopping",
                "init_args": {"monitor": monitor, "mode": mode, "patience": int(patience)},
            }
        )
    trainer["callbacks"] = callbacks
    trainer["enable_checkpointing"] = True
    trainer["enable_progress_bar"] = False
    trainer["default_root_dir"] = str(run_dir)
    loggers: list[dict[str, Any]] = [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(run_dir), "name": "csv"}}
    ]
    if sweep.wandb is not False:
        settings = {} if sweep.wandb is True else dict(sweep.wandb)
        loggers.append(
            {
                "class_path": "lightning.pytorch.loggers.WandbLogger",
                "init_args": {
                    "project": settings.pop("project", "pet-lightning"),
                    "name": run.run_id,
                    "save_dir": str(run_dir),
                    "group": sweep.name,
                    "job_type": run.method,
                    "tags": [run.task, run.method, run.seed_mode, *settings.pop("tags", [])],
                    **settings,
                },
            }
        )
    trainer["logger"] = loggers
    return config


def execute(sweep: SweepConfig, run: RunSpec) -> dict[str, Any]:
    """Train one run, evaluate its selected checkpoint on the reporting split, return its results record."""
    from pet_lightning.cli import PETLightningCLI
    from pet_lightning.data import TaskDataModule
    from pet_lightning.module import PETModule

    run_dir = Path(sweep.out) / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    config = full_config(sweep, run, run_dir)
    config_path = run_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    start = time.perf_counter()
    # The sweep's own argv is not meant for LightningCLI (it gets the run's config file): silence its warning.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    cli = PETLightningCLI(
        PETModule, TaskDataModule, subclass_mode_data=True, run=False, save_config_callback=None,
        parser_kwargs={"parser_mode": "omegaconf"}, args=["--config", str(config_path)],
    )
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    try:
        trainer.fit(model, datamodule=datamodule)
        checkpoint = trainer.checkpoint_callback
        if checkpoint is None or not checkpoint.best_model_path:
            raise RuntimeError(
                f"run {run.run_id} kept no checkpoint: {sweep.select['monitor']} was never logged; make sure "
                "validation runs (trainer.limit_val_batches > 0, check_val_every_n_epoch <= max_epochs)"
            )
        steps, epochs = trainer.global_step, trainer.current_epoch
        best_path = checkpoint.best_model_path
        best_score = float(checkpoint.best_model_score)
        tested = trainer.test(model, datamodule=datamodule, ckpt_path="best", verbose=False)
        record = _record(sweep, run, model, datamodule, tested, best_path, best_score, steps, epochs)
        record["wall_s"] = round(time.perf_counter() - start, 1)
        record["config_path"] = str(config_path)
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.experiment.summary.update({f"sweep/{k}": v for k, v in record.items() if _scalar(v)})
        if not sweep.keep_checkpoints:
            Path(best_path).unlink(missing_ok=True)
        return record
    finally:
        _finish_wandb(trainer)
        del cli, trainer, model, datamodule
        gc.collect()


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool))


def _finish_wandb(trainer) -> None:
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish()


def _record(sweep, run, model, datamodule, tested, best_path, best_score, steps, epochs) -> dict[str, Any]:
    spec = model.spec
    plan = datamodule.plan
    report = {key.removeprefix("test/"): float(value) for key, value in tested[0].items() if key.startswith("test/")}
    match = re.search(r"epoch=(\d+)-step=(\d+)", Path(best_path).name)
    return {
        "sweep": sweep.name,
        "run_id": run.run_id,
        "task": run.task,
        "method": run.method,
        "strategy": model.strategy.name,
        "seed": run.seed,
        "seed_mode": run.seed_mode,
        "init_seed": run.init_seed,
        "order_seed": run.order_seed,
        "protocol": datamodule.protocol,
        "leaky": bool(plan.leaky),
        "split": plan.description,
        "resource_group": spec.resource_group,
        "train_size": spec.train_size,
        "train_examples": len(plan.train),
        "selection_examples": sum(len(rows) for rows in plan.selection.values()),
        "report_examples": sum(len(rows) for rows in plan.report.values()),
        "headline": spec.headline,
        "monitor": sweep.select["monitor"],
        "best_selection": best_score,
        "best_epoch": int(match.group(1)) if match else None,
        "best_step": int(match.group(2)) if match else None,
        "steps": steps,
        "epochs": epochs,
        "report": report,
        "score": report["headline"],
        "trainable": model.report.trainable,
        "trainable_pct": round(model.report.percent, 6),
        "config_hash": run.config_hash,
        "host": socket.gethostname(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# --------------------------------------------------------------------------------------- results and claims
@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive POSIX lock (``lockf`` works on NFS too), held for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


def append_result(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line atomically: under a lock, write old content + the line to a new file, then rename.

    A reader sees the old file or the new one, never a partial line, whatever happens to this process.
    """
    line = json.dumps(record, sort_keys=True) + "\n"
    with file_lock(path.with_name(path.name + ".lock")):
        existing = path.read_bytes() if path.exists() else b""
        tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(existing + line.encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)


def load_results(*paths: str | Path) -> list[dict[str, Any]]:
    """Records of one or more results files (later duplicates of a ``run_id`` are dropped)."""
    records: dict[str, dict[str, Any]] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise SweepError(f"results file {path} does not exist: pass the results.jsonl a sweep wrote")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise SweepError(f"{path}:{number}: not a JSON line ({err.msg}): remove or repair that line") from None
            records.setdefault(record["run_id"], record)
    return list(records.values())


def finished_ids(path: Path) -> set[str]:
    return {record["run_id"] for record in load_results(path)} if path.exists() else set()


class Claims:
    """Lock files ``<out>/claims/<run_id>.claim`` that keep two workers off the same run."""

    def __init__(self, folder: Path, stale_after_s: float):
        self.folder = folder
        self.stale_after_s = stale_after_s
        self.folder.mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname()

    def path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.claim"

    def try_claim(self, run_id: str) -> bool:
        path = self.path(run_id)
        if path.exists() and self.is_stale(path):
            # Rename first: of several workers that saw the same stale claim, only one rename succeeds.
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, path.with_name(f"{path.name}.stale.{self.host}.{os.getpid()}"))
                os.unlink(path.with_name(f"{path.name}.stale.{self.host}.{os.getpid()}"))
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump({"host": self.host, "pid": os.getpid(), "since": time.time()}, handle)
        return True

    def is_stale(self, path: Path) -> bool:
        try:
            owner = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
        except (FileNotFoundError, json.JSONDecodeError):
            return True
        if owner.get("host") == self.host and not _alive(int(owner.get("pid", -1))):
            return True
        return age > self.stale_after_s

    def release(self, run_id: str) -> None:
        self.path(run_id).unlink(missing_ok=True)

    @contextlib.contextmanager
    def heartbeat(self, run_id: str) -> Iterator[None]:
        """Touch the claim while the run lasts, so workers elsewhere can tell a live claim from a dead one."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                with contextlib.suppress(FileNotFoundError):
                    os.utime(self.path(run_id))

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) holds its pid but runs nothing.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


# ------------------------------------------------------------------------------------------------ workers
def select_runs(runs: list[RunSpec], filters: dict[str, list[str]]) -> list[RunSpec]:
    """Runs matching every filter (``task``, ``method``, ``seed``, ``seed_mode`` -> allowed values)."""
    return [run for run in runs if all(str(getattr(run, key)) in values for key, values in filters.items() if values)]


def work(sweep: SweepConfig, runs: list[RunSpec], label: str = "worker") -> int:
    """Claim and execute unfinished runs until none is left; returns the number of failed runs."""
    results = sweep.results_path
    claims = Claims(Path(sweep.out) / "claims", sweep.stale_after_s)
    attempted: set[str] = set()
    failures = 0
    total = len(runs)
    while True:
        done = finished_ids(results)
        pending = [run for run in runs if run.run_id not in done and run.run_id not in attempted]
        run = next((run for run in pending if claims.try_claim(run.run_id)), None)
        if run is None:
            return failures
        attempted.add(run.run_id)
        # Another worker may have finished it between the listing and the claim.
        if run.run_id in finished_ids(results):
            claims.release(run.run_id)
            continue
        print(f"[{sweep.name} {label}] start {run.run_id} ({len(done) + 1}/{total})", flush=True)
        try:
            with claims.heartbeat(run.run_id):
                record = execute(sweep, run)
            append_result(results, record)
            print(
                f"[{sweep.name} {label}] done {run.run_id}: test/{record['headline']}={record['score']:.4f} "
                f"steps={record['steps']} best_step={record['best_step']} wall_s={record['wall_s']}",
                flush=True,
            )
        except Exception as err:  # noqa: BLE001 (one failed run must not stop the sweep; it is retried on resume)
            failures += 1
            print(f"[{sweep.name} {label}] FAILED {run.run_id}: {type(err).__name__}: {err}", file=sys.stderr,
                  flush=True)
        finally:
            claims.release(run.run_id)


def _set_threads(sweep: SweepConfig) -> None:
    import torch

    threads = sweep.threads or max(1, (os.cpu_count() or 1) // sweep.workers)
    torch.set_num_threads(threads)


def run_sweep(config_path: str, filters: dict[str, list[str]] | None = None, workers: int | None = None,
              worker: bool = False) -> int:
    """Run (or resume) a sweep; returns a process exit code (0 when every selected run is in the results)."""
    sweep = SweepConfig.from_file(config_path)
    if workers is not None:
        sweep.workers = workers
    runs = select_runs(plan_runs(sweep), filters or {})
    Path(sweep.out).mkdir(parents=True, exist_ok=True)
    done = finished_ids(sweep.results_path)
    todo = [run for run in runs if run.run_id not in done]
    if worker:
        # A worker of a parallel sweep: the parent prints the plan and judges completion once all workers end.
        _set_threads(sweep)
        return 1 if work(sweep, runs, label=f"pid {os.getpid()}") else 0
    print(f"[{sweep.name}] {len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to do; "
          f"results: {sweep.results_path}", flush=True)
    if sweep.protocol == "standard":
        print(f"[{sweep.name}] WARNING: protocol standard selects and reports on the same dev set; every result is "
              "marked leaky. Use dev_split or train_holdout for honest numbers.", file=sys.stderr, flush=True)
    if not todo:
        return 0
    if sweep.workers == 1:
        _set_threads(sweep)
        failures = work(sweep, runs, label=f"pid {os.getpid()}")
    else:
        failures = _spawn_workers(config_path, filters or {}, sweep.workers)
    left = [run.run_id for run in runs if run.run_id not in finished_ids(sweep.results_path)]
    if left:
        print(f"[{sweep.name}] {len(left)} run(s) not finished (failed or claimed by a live worker): run the same "
              "command again to retry them", file=sys.stderr, flush=True)
    return 1 if failures or left else 0


def _spawn_workers(config_path: str, filters: dict[str, list[str]], count: int) -> int:
    command = [sys.executable, "-m", "pet_lightning.sweep", "--config", config_path, "--worker"]
    for key, values in filters.items():
        for value in values:
            command += [f"--{key.replace('_', '-')}", value]
    children = [subprocess.Popen(command) for _ in range(count)]

    def stop(signum: int, frame: object) -> None:
        # Killing the sweep kills its workers; their claims then go stale and are taken over on resume.
        for child in children:
            child.terminate()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return sum(1 for child in children if child.wait() != 0)
    except KeyboardInterrupt:
        for child in children:
            child.terminate()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def status(config_path: str) -> int:
    """Print each run and whether it is finished, claimed or pending (``--dry-run``)."""
    sweep = SweepConfig.from_file(config_path)
    done = finished_ids(sweep.results_path)
    claims = Path(sweep.out) / "claims"
    for run in plan_runs(sweep):
        claimed = (claims / f"{run.run_id}.claim").exists()
        state = "finished" if run.run_id in done else "claimed" if claimed else "pending"
        print(f"{state:8s} {run.run_id} init_seed={run.init_seed} order_seed={run.order_seed}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="sweep file, e.g. configs/revisiting/sweep_rte.yaml")
    parser.add_argument("--workers", type=int, help="parallel worker processes (overrides the file)")
    parser.add_argument("--worker", action="store_true", help="run as one worker (what --workers N starts)")
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
    try:
        if args.dry_run:
            return status(args.config)
        return run_sweep(args.config, filters, workers=args.workers, worker=args.worker)
    except (SweepError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
