"""``PETLightningCLI``: the LightningCLI of the project, importable by the command line and by the sweep runner.

It lives apart from :mod:`pet_lightning.cli` (the entry point that dispatches ``fit`` / ``sweep`` / ``report``)
so that the sweep, which builds one ``PETLightningCLI`` per run, imports it without an import circle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import LightningCLI

from pet_lightning.callbacks import (
    AdaLoraSchedule,
    ChildTuningFisher,
    ResumeCheckpoints,
    RunSummary,
    StrategyFreezing,
    SubmissionWriter,
)
from pet_lightning.callbacks.resume import bind_resume, lightning_resume_warnings_ignored
from pet_lightning.checkpoint_io import load_checkpoint_file
from pet_lightning.data import TaskDataModule
from pet_lightning.data.task_files import is_task_file
from pet_lightning.module import PETModule
from pet_lightning.paths import from_start
from pet_lightning.strategies import ChildTuningD, Strategy
from pet_lightning.strategies.peft_methods import uses_adalora
from pet_lightning.tasks import get_task

SHOW_TIPS_ENV = "PET_LIGHTNING_TIPS"
"""Set to 1 to see Lightning's advertising tips (litlogger, litmodels), which the CLI hides by default."""
LIGHTNING_TIP_PREFIX = "💡 Tip:"
# Values of ckpt_path that Lightning resolves itself: names, not files.
_CKPT_PATH_NAMES = ("best", "last", "hpc")
# rank_zero_info() logs through the logger of lightning_utilities' rank_zero module, which Lightning renames to its
# own module's name when it imports (pytorch after fabric); filtering both covers either import order.
_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
# The callbacks a strategy cannot train without, added to the trainer unless the config lists one already:
# AdaLoRA's rank-budget schedule, Child-Tuning's Fisher scores (whose settings a config may give by listing it).
REQUIRED_CALLBACKS: tuple[tuple[Callable[[Strategy], bool], type[L.Callback]], ...] = (
    (uses_adalora, AdaLoraSchedule),
    (lambda strategy: isinstance(strategy, ChildTuningD), ChildTuningFisher),
)


class _DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LIGHTNING_TIP_PREFIX)


def hide_lightning_tips() -> None:
    """Drop Lightning's "💡 Tip: ... try installing litlogger / litmodels" lines (Lightning has no setting for them)
    unless ``PET_LIGHTNING_TIPS=1``; every other message of those loggers passes."""
    if os.environ.get(SHOW_TIPS_ENV) == "1":
        return
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropLightningTips) for existing in logger.filters):
            logger.addFilter(_DropLightningTips())


class PETLightningCLI(LightningCLI):
    """LightningCLI with the task and backbone linked between model and data, and Lightning's tips hidden."""

    def __init__(self, *args, **kwargs) -> None:
        hide_lightning_tips()
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.backbone", "data.init_args.backbone")
        # The model gets the data's task as configs and checkpoints name it: a name, or a task file's absolute path.
        parser.link_arguments("data.task", "model.task", compute_fn=_task_reference, apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        # `--trainer.enable_progress_bar=false` over a config that lists a progress bar (the quickstart's
        # RichProgressBar) means "no bar": drop it, where Lightning would refuse the pair with a traceback.
        subcommand = self.config.get("subcommand")
        trainer = (self.config[subcommand] if subcommand else self.config).get("trainer")
        data = (self.config[subcommand] if subcommand else self.config).get("data")
        task = data.get("init_args", {}).get("task") if data is not None else None
        if isinstance(task, str) and is_task_file(task):  # read once against the start folder, as hparams hold it
            data.init_args.task = from_start(task)
        if trainer is not None and trainer.get("enable_progress_bar") is False and trainer.get("callbacks"):
            trainer.callbacks = [callback for callback in trainer.callbacks
                                 if not str(callback.get("class_path", "")).endswith("ProgressBar")]

    def _parse_ckpt_path(self) -> None:
        # Lightning reads --ckpt_path's hyper-parameters with a bare torch.load before any of our code runs: check the
        # file first, so that a truncated, corrupt or pickled one gets its one line naming the file.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and not _lightning_ckpt_name(ckpt_path):
            # Fixed now to the folder the command started in: the fit reads it later, after any change of directory.
            ckpt_path = self.config[subcommand]["ckpt_path"] = from_start(ckpt_path)
        if ckpt_path and os.path.exists(ckpt_path):  # a folder gets its own line too
            load_checkpoint_file(ckpt_path, mmap=True)
        super()._parse_ckpt_path()

    def _run_subcommand(self, subcommand: str) -> None:
        # Lightning's resume warnings are wrong for these runs (see callbacks/resume.py): silenced for this run only.
        with lightning_resume_warnings_ignored():
            super()._run_subcommand(subcommand)

    def instantiate_trainer(self, **kwargs):
        root = self._get(self.config_init, "trainer", default={}).get("default_root_dir")
        if root and "default_root_dir" not in kwargs:
            # Lightning writes logs and checkpoints there later, after any change of directory: fix the folder now.
            kwargs["default_root_dir"] = from_start(root)
        trainer = super().instantiate_trainer(**kwargs)
        present = {type(callback) for callback in trainer.callbacks}
        # SubmissionWriter acts only on `predict`, where it writes the leaderboard file.
        for required in (StrategyFreezing, RunSummary, SubmissionWriter, ResumeCheckpoints):
            if not any(issubclass(kind, required) for kind in present):
                trainer.callbacks.append(required())
        bind_resume(trainer)  # auto-resume picks its checkpoint before fit runs any hook (callbacks/resume.py)
        name_wandb_runs(trainer, self.model)
        trainer.callbacks += required_callbacks(self.model.strategy, trainer.callbacks)
        return trainer


def required_callbacks(strategy: Strategy, present: list[L.Callback]) -> list[L.Callback]:
    """The callbacks ``strategy`` needs (:data:`REQUIRED_CALLBACKS`) that ``present`` lacks, freshly built."""
    return [kind() for needs, kind in REQUIRED_CALLBACKS
            if needs(strategy) and not any(isinstance(callback, kind) for callback in present)]


def _task_reference(task: str) -> str:
    return get_task(task).reference


def name_wandb_runs(trainer, model: PETModule) -> None:
    """Fill ``{task}`` and ``{strategy}`` in a W&B logger's run name (the quickstart's
    ``quickstart-{task}-{strategy}``) before its run starts, so that runs are named after what they train."""
    strategy = model.strategy.config_dict()
    label = strategy["name"]
    if label == "peft":  # the peft class says more: peft-ia3, peft-lora...
        label += "-" + str(strategy["config"]["class_path"]).rsplit(".", 1)[-1].removesuffix("Config").lower()
    for logger in trainer.loggers:
        init = getattr(logger, "_wandb_init", None)  # WandbLogger's arguments to wandb.init, read when the run starts
        if isinstance(init, dict) and "{" in str(init.get("name") or ""):
            init["name"] = logger._name = str(init["name"]).format(task=model.spec.name, strategy=label)


@contextlib.contextmanager
def as_command_line(args: list[str]) -> Iterator[None]:
    """Make ``args`` the process's command line (``sys.argv[1:]``) for the block, restoring it after.

    LightningCLI reads ``sys.argv`` when it is given no ``args``, which is how a command-line entry point is meant
    to call it (given both, it warns). A caller that has the arguments as a list (``main(argv)`` in tests, the table
    scripts) runs LightningCLI exactly as if they had been typed.
    """
    saved = sys.argv
    sys.argv = [saved[0] if saved else "cli.py", *args]
    try:
        yield
    finally:
        sys.argv = saved


def _lightning_ckpt_name(value: str) -> bool:
    """Whether ``ckpt_path`` names a checkpoint Lightning finds itself (``last``, ``registry:<name>``), not a file."""
    return value in _CKPT_PATH_NAMES or value.lower() == "registry" or value.lower().startswith("registry:")


def absolute_config_args(args: list[str]) -> list[str]:
    """``args`` with each ``--config`` file named relative to the folder the command started in made absolute.

    jsonargparse reads a relative ``--config`` against the current directory, which a caller may have changed since
    the command started. A value that names no file there (inline YAML, a missing file) is left as typed, so the
    parser's own message reports it.
    """
    result, after_flag = [], False
    for arg in args:
        flag, equals, value = arg.partition("=")
        if after_flag:
            arg = _absolute_config(arg)
        elif flag == "--config" and equals:
            arg = f"--config={_absolute_config(value)}"
        after_flag = arg == "--config"
        result.append(arg)
    return result


def _absolute_config(value: str) -> str:
    return from_start(value) if value and os.path.isfile(from_start(value)) else value


def run_lightning(args: list[str] | None = None) -> PETLightningCLI:
    """``python cli.py fit|validate|test|predict ...``: ``args`` None reads ``sys.argv``, a list is run as if it were
    the command line."""
    with as_command_line(absolute_config_args(sys.argv[1:] if args is None else list(args))):
        return _lightning_cli()


def cli_from_config(config_path: str | Path) -> PETLightningCLI:
    """The model, datamodule and trainer ``python cli.py fit --config <config_path>`` would build, not yet run and
    without a saved config copy: for callers that drive ``fit`` / ``test`` themselves (a sweep trial, a benchmark)."""
    return PETLightningCLI(
        PETModule, TaskDataModule, subclass_mode_data=True, run=False, save_config_callback=None,
        parser_kwargs={"parser_mode": "omegaconf"}, args=["--config", from_start(config_path)],
    )


def _lightning_cli() -> PETLightningCLI:
    return PETLightningCLI(
        PETModule,
        TaskDataModule,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf", "default_env": True},
        save_config_kwargs={"overwrite": True},
    )


def fit_summary(config: str | Path, overrides: list[str], root: Path) -> dict[str, str]:
    """``python cli.py fit --config <config> *overrides`` in this process, its output held back, with checkpoints
    under ``root`` and no logger: the fields of the run's ``SUMMARY`` line, as printed.

    Adds ``ckpt_bytes`` (the first checkpoint's size, ``n/a`` without one) and ``wall_s`` (the whole call, data
    loading and evaluation included). For tables and tests that fit shipped configs through the users' code path.
    """
    import io
    import time

    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        cli = run_lightning(["fit", "--config", str(config), "--trainer.logger=false",
                             f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false", *overrides])
    summary = next((c for c in cli.trainer.callbacks if isinstance(c, RunSummary)), None)
    if summary is None or not summary.values:
        raise RuntimeError(f"fit --config {config} printed no SUMMARY line; its output ended with:\n"
                           + out.getvalue()[-2000:])
    fields = {key: str(value) for key, value in summary.values.items()}
    checkpoints = sorted(Path(root).rglob("*.ckpt"))
    fields["ckpt_bytes"] = str(checkpoints[0].stat().st_size) if checkpoints else "n/a"
    fields["wall_s"] = f"{time.perf_counter() - start:.0f}"
    return fields


__all__ = [
    "PETLightningCLI", "REQUIRED_CALLBACKS", "SHOW_TIPS_ENV", "as_command_line", "cli_from_config", "fit_summary",
    "hide_lightning_tips", "name_wandb_runs", "required_callbacks", "run_lightning",
]
