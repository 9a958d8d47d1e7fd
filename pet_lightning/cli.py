"""The command line: ``python cli.py fit --config configs/quickstart.yaml``.

A ``LightningCLI`` over :class:`~pet_lightning.module.PETModule` and a :class:`~pet_lightning.data.TaskDataModule`
(``pet_lightning.data.TaskDataModule`` takes every task; ``data.task`` decides GLUE or SuperGLUE), with OmegaConf
interpolation in configs. The task named by the data and the tokenizer named by the model are linked, so each is
set once. Every run gets the strategy-freezing callback and the end-of-fit ``SUMMARY`` line; ``predict`` writes the
leaderboard file. Errors from our own validation print as one ``error:`` line and exit with code 2.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

from pet_lightning.data import TaskDataModule
from pet_lightning.errors import PetLightningError
from pet_lightning.lightning_cli import PETLightningCLI, run_lightning

# Extra sub-commands beyond Lightning's fit / validate / test / predict; filled by their modules.
EXTRA_COMMANDS: dict[str, Callable[[list[str]], int]] = {}


def _sweep_command(argv: list[str]) -> int:
    from pet_lightning.sweeps.runner import main as sweep_main

    return sweep_main(argv)


def _report_command(argv: list[str]) -> int:
    # A study's records get the study's layout, others the generic tables: the command that knows studies decides.
    from pet_lightning.studies.command import report_main

    return report_main(argv)


def _audit_command(argv: list[str]) -> int:
    from pet_lightning.data.audit import main as audit_main

    return audit_main(argv)


def _study_command(argv: list[str]) -> int:
    from pet_lightning.studies.command import main as study_main

    return study_main(argv)


def _export_command(argv: list[str]) -> int:
    from pet_lightning.export_command import main as export_main

    return export_main(argv)


EXTRA_COMMANDS["sweep"] = _sweep_command
EXTRA_COMMANDS["study"] = _study_command
EXTRA_COMMANDS["audit"] = _audit_command
EXTRA_COMMANDS["report"] = _report_command
EXTRA_COMMANDS["export"] = _export_command

# What `cli.py --help` lists after Lightning's own sub-commands (those dispatched before LightningCLI parses).
EXTRA_HELP = {
    "sweep": "run a sweep file: tasks x methods x seeds, resumable (docs/protocol.md)",
    "study": "run a study file at a scale and write its report (docs/studies.md)",
    "report": "tables and figures from a sweep's results.jsonl",
    "audit": "text shared between a task's splits (docs/protocol.md)",
    "export": "a checkpoint to a folder load_exported / plain peft load (docs/injected_methods.md)",
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; ``argv`` None reads the process's command line, a list runs as if it had been typed."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in EXTRA_COMMANDS:
        return EXTRA_COMMANDS[args[0]](args[1:])
    if args[:1] in (["-h"], ["--help"]):
        with contextlib.suppress(SystemExit):  # LightningCLI prints its help and exits
            run_lightning(["--help"])
        print(extra_commands_help())
        return 0
    if not args:
        print(f"error: name a command: fit, validate, test, predict, {', '.join(EXTRA_COMMANDS)} "
              "(python cli.py --help lists them)", file=sys.stderr)
        return 2
    try:
        run_lightning(None if argv is None else args)
    except (ValueError, RuntimeError, OSError) as err:
        # Our errors are one line that names the problem and the fix; show that, not a traceback.
        print(f"error: {user_error(err)}", file=sys.stderr)
        return 2
    return 0


def extra_commands_help() -> str:
    """The lines ``cli.py --help`` adds for the commands LightningCLI does not know."""
    lines = ["", "more commands (python cli.py <command> --help for each):"]
    lines += [f"    {name:<20}{EXTRA_HELP.get(name, '')}" for name in EXTRA_COMMANDS]
    return "\n".join(lines)


def user_error(err: BaseException) -> BaseException:
    """The exception whose one line the user reads for ``err``.

    jsonargparse instantiates ``data`` (a subclass type, so a Union with None) and callbacks itself; when a
    constructor refuses a value, it re-raises that exception inside a multi-line ValueError of its own ("Does not
    validate against any of the Union subtypes ... Given value: Namespace(...)"), chained with ``raise ... from``.
    Following the causes from the outside in, the first :class:`~pet_lightning.errors.PetLightningError` is ours;
    without one, the innermost cause is the constructor's own words (a third-party error without a cause is shown
    as it is).
    """
    seen: set[int] = set()
    current: BaseException | None = err
    innermost = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PetLightningError):
            return current
        innermost = current
        current = current.__cause__
    return innermost


__all__ = ["EXTRA_COMMANDS", "PETLightningCLI", "main", "run_lightning", "user_error", "TaskDataModule"]
