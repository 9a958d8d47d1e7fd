"""Sweep file -> run specs (pure: no Ray, no training).

A sweep file names tasks, methods, seed modes and seeds; :func:`plan_runs` turns it into one :class:`RunSpec` per
combination, each with a merged LightningCLI config (defaults < ``base`` < the method's config files < the method's
``overrides`` < ``task_overrides`` < ``cell_overrides`` < ``precision``) and a stable run id
``<task>.<method>.<seed mode>.<seed>.<run hash>``. :func:`full_config` adds what one run needs at run time (seeds,
the selection callbacks, loggers): the file written to ``<out>/runs/<run_id>/config.yaml``, which
``python cli.py fit --config`` repeats.

Engine settings (``cpus_per_trial``, ``gpus_per_trial``, ``max_concurrent_trials``, ``max_failures``, ``address``,
``storage_path``) say where and how runs execute; they never enter a run's id or hash. ``precision`` (or
``--precision``) is not one of them: it sets every run's ``trainer.precision`` last, so it changes run ids.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pet_lightning.paths import from_start
from pet_lightning.seeds import SEED_MODES, STUDY_SEEDS, resolve_seeds
from pet_lightning.sweeps.files import SweepError, apply_scale, deep_merge, digest, load_yaml
from pet_lightning.sweeps.resolved import check_plan

RESULTS_FILE = "results.jsonl"
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
SELECT_MODES = {"val/loss": "min", "val/headline": "max"}
DATA_MODULES = {"glue": "pet_lightning.data.GlueDataModule", "superglue": "pet_lightning.data.SuperGlueDataModule"}
# Trainer callbacks that the sweep replaces with its own (selection must happen on the selection split).
# The kept checkpoint and early stopping: for two-stage methods they look at stage-2 epochs only.
SELECTION_CHECKPOINT = "pet_lightning.callbacks.SelectionCheckpoint"
SELECTION_EARLY_STOPPING = "pet_lightning.callbacks.SelectionEarlyStopping"
REPLACED_CALLBACKS = ("ModelCheckpoint", "SelectionCheckpoint", "EarlyStopping", "RichProgressBar", "TQDMProgressBar",
                      "ResumeCheckpoints")
REMOVED_SETTINGS = {
    "stale_after_s": "Ray Tune notices lost runs itself and restarts them (see max_failures): remove it",
}

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
        base: LightningCLI defaults of every run; a method's config files replace them (the runner notes where).
        task_overrides: Task name -> settings merged last.
        out: Results folder; defaults to ``runs/sweeps/<name>``.
        wandb: W&B settings (``project``, ``tags``, ``entity``) or False for none.
        keep_checkpoints: Keep each run's selected checkpoint (and its last epoch checkpoint) after it is evaluated.
        cpus_per_trial: CPUs Ray reserves for one run; its torch threads follow.
        gpus_per_trial: GPUs Ray reserves for one run, at most 1; a fraction (0.25) lets several runs share one
            GPU, each capped at its share of the GPU's memory.
        max_concurrent_trials: At most this many runs at once (None: as many as the resources allow).
        max_failures: Ray restarts a failed run this many times (from its last epoch checkpoint) before it is
            recorded as failed.
        address: Ray cluster to run on (``auto``, ``<head>:6379``); None starts a local Ray instance
            (``RAY_ADDRESS`` is read when neither this nor ``--address`` is given).
        storage_path: Where Ray keeps trial state and epoch checkpoints (a shared folder or an object-store URI on
            a cluster); defaults to ``out``.
        study: Report layout of a study file (``transferability_table1``, ...; ``cli.py study`` checks that it
            names one); None for a plain sweep.
        scale: The study file's scale these settings are (``cpu``, ``paper``); set by :func:`apply_scale`.
        precision: Every run's ``trainer.precision``, applied after the method files (which set ``bf16-mixed``;
            ``base`` cannot override them): e.g. ``16-mixed`` on GPUs without bf16 (V100, T4). None keeps theirs.
        cell_overrides: Task -> method -> settings merged after ``task_overrides`` (one cell: EH-FT's WiC rate).
        table_metrics, deliberate_differences: For reports only: task -> the metric the paper's table reports (one
            the task logs), and name -> reason of each way a scale knowingly differs from the study's code.
        reuse_from: Results folders of other sweeps (``{scale}`` is filled in) whose ``ok`` records of identical
            runs are adopted instead of training them again: same ``run_hash`` and ``config_hash``, i.e. the same
            merged config, selection, protocol and seeds. Studies that report the same runs in another shape (the
            paper's Figures 3 and 4 are drawn from its Table 2 runs) train them once; each adopted record names
            its source in ``reused_from``.
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
    wandb: dict[str, Any] | bool = field(default_factory=lambda: {"project": "pet-lightning"})
    keep_checkpoints: bool = False
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    max_concurrent_trials: int | None = None
    max_failures: int = 1
    address: str | None = None
    storage_path: str | None = None
    study: str | None = None
    scale: str | None = None
    reuse_from: list[str] = field(default_factory=list)
    precision: str | None = None
    cell_overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    table_metrics: dict[str, str] = field(default_factory=dict)
    deliberate_differences: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from pet_lightning.data.protocol import PROTOCOLS
        from pet_lightning.data.task_files import sweep_tasks
        from pet_lightning.tasks import get_task

        if not self.tasks or not self.methods:
            raise SweepError(f"sweep {self.name!r} needs at least one task and one method: add `tasks` and `methods`")
        self.tasks, self.task_files = sweep_tasks(self.tasks, self.protocol)  # task files: name -> path
        self.cell_overrides = {get_task(task).name: cells for task, cells in self.cell_overrides.items()}
        self.table_metrics = {get_task(task).name: metric for task, metric in self.table_metrics.items()}
        odd = sorted({m for cells in self.cell_overrides.values() for m in cells} - set(self.methods)) + sorted(
            f"{t}: {m}" for t, m in self.table_metrics.items() if m not in get_task(t).metrics)
        if odd:
            raise SweepError(f"cell_overrides / table_metrics name {odd}, which the sweep does not run or log: use "
                             "its methods and each task's metrics")
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
        default_out = f"runs/studies/{self.name}/{self.scale}" if self.scale else f"runs/sweeps/{self.name}"
        # Folders are fixed here to the folder the command started in: trials run in Ray workers started elsewhere.
        self.out = from_start(self.out or default_out)
        self.storage_path = from_start(self.storage_path) if self.storage_path else None
        if isinstance(self.reuse_from, str):
            self.reuse_from = [self.reuse_from]
        self.reuse_from = [from_start(str(folder).format(scale=self.scale)) for folder in self.reuse_from]
        if any(Path(folder).resolve() == Path(self.out).resolve() for folder in self.reuse_from):
            raise SweepError(f"reuse_from names the sweep's own out folder {self.out}: list other sweeps' folders")
        self.check_engine()

    def check_engine(self) -> None:
        """Validate the engine settings (also after command-line flags changed them)."""
        if not self.cpus_per_trial > 0:
            raise SweepError(f"cpus_per_trial={self.cpus_per_trial}: reserve more than 0 CPUs per run (e.g. 1)")
        if self.gpus_per_trial < 0:
            raise SweepError(f"gpus_per_trial={self.gpus_per_trial}: use 0 (CPU runs) or a positive share of a GPU")
        if self.gpus_per_trial > 1:
            # devices>1 in a Ray worker makes Lightning re-launch Ray's worker script as DDP ranks: it hangs or dies.
            raise SweepError(f"gpus_per_trial={self.gpus_per_trial}: a sweep run trains on at most one GPU; use "
                             "gpus_per_trial <= 1 (e.g. 1, or 0.5 to share a GPU), or run a multi-GPU fit with "
                             "`python cli.py fit --config configs/trainer/gpu.yaml`")
        if self.max_concurrent_trials is not None and self.max_concurrent_trials < 1:
            raise SweepError(f"max_concurrent_trials={self.max_concurrent_trials}: use at least 1, or null for no cap")
        if self.max_failures < 0:
            raise SweepError(f"max_failures={self.max_failures}: use 0 (no retries) or more")
        if self.precision is not None and str(self.precision) not in PRECISIONS:
            raise SweepError(f"precision={self.precision!r}: use one of {', '.join(PRECISIONS)}")

    @classmethod
    def from_file(cls, path: str | Path, scale: str | None = None) -> SweepConfig:
        """Read a sweep file, or one ``scale`` of a study file (None: its default scale)."""
        raw = apply_scale(load_yaml(path), scale, path)
        for old, reason in REMOVED_SETTINGS.items():
            if old in raw:
                raise SweepError(f"{path}: `{old}` is no longer a sweep setting: {reason}")
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

    def run_dir(self, run_id: str) -> Path:
        return Path(self.out).resolve() / "runs" / run_id


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
    """One run of a sweep: its id, its seeds and its merged LightningCLI config (seeds not yet in it).

    ``config_hash`` is the same for every seed of one (task, method) config; ``run_hash`` (in the run id) also
    covers the seeds.
    """

    run_id: str
    task: str
    method: str
    seed: int
    seed_mode: str
    init_seed: int
    order_seed: int
    config: dict[str, Any]
    config_hash: str
    run_hash: str


def run_config(sweep: SweepConfig, task: str, method: MethodSpec) -> dict[str, Any]:
    """The merged LightningCLI config of (task, method), without seeds, loggers and selection callbacks."""
    from pet_lightning.tasks import get_task

    config = deep_merge(DEFAULT_RUN_CONFIG, sweep.base)
    config = deep_merge(config, {"model": {"strategy": method.strategy or method.name}})
    for template in method.config:
        path = Path(from_start(template.format(task=task, method=method.name)))
        if not path.is_file() and method.optional_config:
            continue
        config = deep_merge(config, load_yaml(path))  # over base: the runner prints each base value it replaces
    config = deep_merge(config, method.overrides)
    config = deep_merge(config, sweep.task_overrides.get(task, {}))
    config = deep_merge(config, sweep.cell_overrides.get(task, {}).get(method.name, {}))
    if sweep.precision:
        config = deep_merge(config, {"trainer": {"precision": sweep.precision}})
    data = config.setdefault("data", {})
    data.setdefault("class_path", DATA_MODULES.get(get_task(task).benchmark, "pet_lightning.data.TaskDataModule"))
    # A task file's runs read it from its path; its name names the runs and records.
    data.setdefault("init_args", {}).update({"task": sweep.task_files.get(task, task), "protocol": sweep.protocol})
    # The model takes its task from the data (a CLI link); a method file that names one must not disagree.
    config["model"].pop("task", None)
    return config


def plan_runs(sweep: SweepConfig) -> list[RunSpec]:
    """Every run of the sweep, seed-major so that an interrupted sweep has whole seeds for every method."""
    configs = {(t, m): run_config(sweep, t, spec) for t in sweep.tasks for m, spec in sweep.methods.items()}
    check_plan(sweep, configs)  # an unknown method or a bad number fails here, before any run (or Ray) starts
    config_hashes = {
        key: digest({"config": config, "select": sweep.select, "protocol": sweep.protocol})
        for key, config in configs.items()
    }
    runs = []
    for seed in sweep.seeds:
        for mode in sweep.seed_modes:
            for task in sweep.tasks:
                for method in sweep.methods:
                    config = configs[(task, method)]
                    init_seed, order_seed = resolve_seeds(seed, mode, sweep.fixed_seed)
                    # The run hash keeps the formula of the first engine, so run ids of old results stay valid.
                    seeded = {"config": config, "select": sweep.select, "init": init_seed, "order": order_seed}
                    run_hash = digest(seeded)
                    runs.append(
                        RunSpec(
                            run_id=f"{task}.{method}.{mode}.{seed}.{run_hash}",
                            task=task, method=method, seed=seed, seed_mode=mode,
                            init_seed=init_seed, order_seed=order_seed, config=config,
                            config_hash=config_hashes[(task, method)], run_hash=run_hash,
                        )
                    )
    return runs


def select_runs(runs: list[RunSpec], filters: dict[str, list[str]]) -> list[RunSpec]:
    """Runs matching every filter (``task``, ``method``, ``seed``, ``seed_mode`` -> allowed values)."""
    return [run for run in runs if all(str(getattr(run, key)) in values for key, values in filters.items() if values)]


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
            "class_path": SELECTION_CHECKPOINT,
            "init_args": {"dirpath": str(run_dir / "checkpoints"), "filename": "best-{epoch}-{step}",
                          "monitor": monitor, "mode": mode, "save_top_k": 1, "save_weights_only": True},
        }
    )
    if patience is not None:
        callbacks.append(
            {
                "class_path": SELECTION_EARLY_STOPPING,
                "init_args": {"monitor": monitor, "mode": mode, "patience": int(patience)},
            }
        )
    # A trial resumes from the epoch checkpoint Ray hands it and from nothing else: no auto-resume besides it.
    callbacks.append({"class_path": "pet_lightning.callbacks.ResumeCheckpoints", "init_args": {"auto_resume": False}})
    trainer["callbacks"] = callbacks
    trainer["enable_checkpointing"] = True
    trainer["enable_progress_bar"] = False
    trainer["default_root_dir"] = str(run_dir)
    trainer["logger"] = _loggers(sweep, run, run_dir)
    return config


def _loggers(sweep: SweepConfig, run: RunSpec, run_dir: Path) -> list[dict[str, Any]]:
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
    return loggers


def plan_digest(sweep: SweepConfig, runs: list[RunSpec]) -> str:
    """Names the sweep's Ray experiment: the same runs under the same retry and concurrency settings restore it."""
    return digest({"runs": sorted(run.run_id for run in runs), "max_failures": sweep.max_failures,
                   "max_concurrent_trials": sweep.max_concurrent_trials})
