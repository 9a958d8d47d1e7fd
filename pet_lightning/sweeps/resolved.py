"""What a sweep's plan resolves to, checked before anything runs.

* :func:`check_plan`: every (task, method) config builds its strategy and passes the model's number checks, so an
  unknown method or a negative rate fails the whole sweep in one line (exit 2) before Ray starts.
* :func:`base_notes`: where a method config file replaces a value of the sweep file's ``base`` (the files come
  after ``base``, see :func:`pet_lightning.sweeps.plan.run_config`), one line per key, printed by the runner.
* :func:`settings_line`: the settings that decide a run's cost and outcome, as ``--dry-run`` prints them per run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pet_lightning.paths import from_start
from pet_lightning.sweeps.files import SweepError, load_yaml

# (dotted key in a run's config, label): what --dry-run shows of each run's resolved config.
RESOLVED_KEYS = (
    ("model.strategy", "strategy"), ("trainer.max_epochs", "max_epochs"), ("trainer.max_steps", "max_steps"),
    ("model.learning_rate", "lr"), ("model.head_learning_rate", "head_lr"),
    ("data.init_args.batch_size", "batch_size"), ("data.init_args.train_subset", "train_subset"),
    ("data.init_args.max_length", "max_length"), ("trainer.precision", "precision"),
    ("trainer.accelerator", "accelerator"),
)
_MISSING = object()


def lookup(config: dict[str, Any], dotted: str) -> Any:
    """The value at ``a.b.c`` in nested dicts, or ``_MISSING``."""
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return _MISSING
        config = config[part]
    return config


def leaves(settings: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of every non-dict value (an empty dict counts as a value)."""
    found = []
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            found += leaves(value, f"{prefix}{key}.")
        else:
            found.append((f"{prefix}{key}", value))
    return found


def settings_line(config: dict[str, Any]) -> str:
    """``strategy=lora max_epochs=1 lr=0.001 ...`` for the keys of :data:`RESOLVED_KEYS` the config sets."""
    shown = []
    for dotted, label in RESOLVED_KEYS:
        value = lookup(config, dotted)
        if value is _MISSING or value is None:
            continue
        if label == "strategy" and isinstance(value, dict):
            value = value.get("name", value)
        shown.append(f"{label}={value}")
    return " ".join(shown)


def method_files(sweep: Any, task: str, method: Any) -> list[Path]:
    """The method's config files for ``task`` that exist, in merge order."""
    paths = [Path(from_start(template.format(task=task, method=method.name))) for template in method.config]
    return [path for path in paths if path.is_file()]


def base_notes(sweep: Any) -> list[str]:
    """One line per ``base`` key that method config files set otherwise (how many files, one example)."""
    replaced: dict[str, list[tuple[Path, Any]]] = {}
    seen: set[Path] = set()
    for task in sweep.tasks:
        for method in sweep.methods.values():
            for path in method_files(sweep, task, method):
                if path in seen:
                    continue
                seen.add(path)
                from_file = load_yaml(path)
                for dotted, value in leaves(sweep.base):
                    theirs = lookup(from_file, dotted)
                    if theirs is not _MISSING and theirs != value:
                        replaced.setdefault(dotted, []).append((path, theirs))
    return [
        f"base {dotted}={_short(lookup(sweep.base, dotted))} is replaced by {len(files)} method config file(s) (e.g. "
        f"by {_short(files[0][1])} in {files[0][0]}), which come after base: to set it for every run, put it in "
        "task_overrides or the methods' overrides (docs/protocol.md)"
        for dotted, files in replaced.items()
    ]


def _short(value: Any, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def check_plan(sweep: Any, configs: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Build every (task, method)'s strategy and check its model numbers; the first problem is a SweepError."""
    from pet_lightning.run_checks import check_model_settings
    from pet_lightning.strategies import build_strategy

    if "strategy" in (sweep.base.get("model") or {}):
        raise SweepError(f"sweep {sweep.name!r}: base sets model.strategy, which every method replaces with its "
                         "own: remove it from base and set `strategy` per method")
    for (task, method), config in configs.items():
        model = config.get("model", {})
        try:
            build_strategy(model.get("strategy", method))
            check_model_settings(model)
        except ValueError as err:
            raise SweepError(f"sweep {sweep.name!r}, method {method!r} ({task}): {err}; nothing was run") from None


__all__ = ["RESOLVED_KEYS", "base_notes", "check_plan", "leaves", "lookup", "method_files", "settings_line"]
