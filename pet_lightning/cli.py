"""The command line: ``python cli.py fit --config configs/quickstart.yaml``.

A ``LightningCLI`` over :class:`~pet_lightning.module.PETModule` and any
:class:`~pet_lightning.data.TaskDataModule` subclass, with OmegaConf interpolation in configs. The task named
by the data and the tokenizer named by the model are linked, so each is set once. Every run gets the
strategy-freezing callback and the end-of-fit ``SUMMARY`` line; ``predict`` writes the leaderboard file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from lightning.pytorch.cli import LightningCLI

from pet_lightning.callbacks import RunSummary, StrategyFreezing, SubmissionWriter
from pet_lightning.data import TaskDataModule
from pet_lightning.module import PETModule


class PETLightningCLI(LightningCLI):
    """LightningCLI with the task and backbone linked between model and data."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.backbone", "data.init_args.backbone")
        parser.link_arguments("data.task", "model.task", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        present = {type(callback) for callback in trainer.callbacks}
        # SubmissionWriter acts only on `predict`, where it writes the leaderboard file.
        for required in (StrategyFreezing, RunSummary, SubmissionWriter):
            if not any(issubclass(kind, required) for kind in present):
                trainer.callbacks.append(required())
        return trainer


def run_lightning(args: list[str] | None = None) -> PETLightningCLI:
    return PETLightningCLI(
        PETModule,
        TaskDataModule,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf", "default_env": True},
        save_config_kwargs={"overwrite": True},
        args=args,
    )


# Extra sub-commands beyond Lightning's fit / validate / test / predict; filled by their modules.
EXTRA_COMMANDS: dict[str, Callable[[list[str]], int]] = {}


def _sweep_command(argv: list[str]) -> int:
    from pet_lightning.sweep import main as sweep_main

    return sweep_main(argv)


def _report_command(argv: list[str]) -> int:
    from pet_lightning.report import main as report_main

    return report_main(argv)


EXTRA_COMMANDS["sweep"] = _sweep_command
EXTRA_COMMANDS["report"] = _report_command


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTRA_COMMANDS:
        return EXTRA_COMMANDS[argv[0]](argv[1:])
    try:
        run_lightning(argv)
    except (ValueError, RuntimeError, OSError) as err:
        # Our errors are one line that names the problem and the fix; show that, not a traceback.
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


__all__ = ["EXTRA_COMMANDS", "PETLightningCLI", "main", "run_lightning", "TaskDataModule"]
