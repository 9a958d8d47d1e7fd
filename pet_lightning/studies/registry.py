"""Study layouts by name: ``@layout("revisiting_table2")`` registers a report writer, as ``register_strategy`` does
for strategies.

A layout writes one study's report (tables, figures, findings) from the records of its study file. The decorator
does what every layout starts with: it checks that the records are finished runs of that study at one scale
(:func:`~pet_lightning.studies.common.study_runs`) and makes the output folder; the decorated function receives
the checked :class:`~pet_lightning.studies.common.StudyRuns` and returns the paths it wrote by name. The registered
writer (what the decorator returns) takes the raw records, so a layout is called as ``write_table2(records, out)``.

Read the registry through :mod:`pet_lightning.studies.layouts`, which imports every layout module first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pet_lightning.errors import StudyError
from pet_lightning.studies.common import StudyRuns, study_runs

LayoutWriter = Callable[[list[dict[str, Any]], Path, float], dict[str, Path]]
LayoutBody = Callable[[StudyRuns, Path, float], dict[str, Path]]

# Layout name -> the writer of its report (records, out folder, alpha) -> {name: path}; filled by @layout.
LAYOUTS: dict[str, LayoutWriter] = {}


def layout(name: str) -> Callable[[LayoutBody], LayoutWriter]:
    """Register the decorated function as the report layout of study ``name`` (the ``study`` key of its file)."""

    def register(body: LayoutBody) -> LayoutWriter:
        if name in LAYOUTS:
            raise StudyError(f"study layout {name!r} is registered twice: give the second one another name")

        @functools.wraps(body)
        def write(records: list[dict[str, Any]], out: str | Path, alpha: float = 0.05) -> dict[str, Path]:
            runs = study_runs(records, name)
            out = Path(out)
            out.mkdir(parents=True, exist_ok=True)
            return body(runs, out, alpha)

        LAYOUTS[name] = write
        return write

    return register


def check_layout(name: str) -> None:
    """Refuse a study file whose ``study`` names no layout."""
    if name not in LAYOUTS:
        raise StudyError(f"study {name!r} has no report layout: choose one of {', '.join(sorted(LAYOUTS))}")


__all__ = ["LAYOUTS", "LayoutWriter", "check_layout", "layout"]
