"""Every study layout, registered: the records of a study -> the report in its paper's shape.

Importing this module imports each layout module, so :data:`~pet_lightning.studies.registry.LAYOUTS` is complete
wherever it is read from here (``python cli.py study`` and ``python cli.py report``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pet_lightning.errors import StudyError
from pet_lightning.reports.examples import SECTION_TITLE, resolution_section

# Each import registers that module's layouts (the @layout decorator); the names are not used here.
from pet_lightning.studies import (  # noqa: F401
    eh_ft,
    revisiting,
    revisiting_figures,
    revisiting_table1,
    revisiting_table4,
    transferability,
    transferability_table3,
    tsne,
)
from pet_lightning.studies.registry import LAYOUTS, LayoutWriter, check_layout


def layout_writer(name: str) -> LayoutWriter:
    """The writer of study ``name``'s report."""
    check_layout(name)
    return LAYOUTS[name]


def study_of(records: list[dict[str, Any]]) -> str | None:
    """The study all ``records`` belong to; None when they come from plain sweeps (or mix several)."""
    studies = {record.get("study") for record in records}
    return studies.pop() if len(studies) == 1 else None


def write_study_report(records: list[dict[str, Any]], out: str | Path, alpha: float = 0.05) -> dict[str, Path]:
    """The report of the study the records belong to, in its paper's shape.

    Every study's ``report.md`` ends with the resolution of the reported split: a layout adds it itself on the
    metrics its tables compare (``StudyRuns.resolution``); one that does not gets it here, on each task's headline.
    """
    study = study_of(records)
    if study is None:
        names = sorted(str(record.get("study")) for record in records)
        raise StudyError(f"these records belong to no single study ({', '.join(sorted(set(names)))}): report each "
                         "study's results.jsonl on its own")
    paths = layout_writer(study)(records, Path(out), alpha)
    report = paths.get("report")
    if report is not None and report.is_file():
        text = report.read_text(encoding="utf-8")
        if SECTION_TITLE not in text:
            ok = [record for record in records if record.get("status", "ok") == "ok"]
            report.write_text(text.rstrip("\n") + "\n\n" + resolution_section(ok), encoding="utf-8")
    return paths


__all__ = ["LAYOUTS", "check_layout", "layout_writer", "study_of", "write_study_report"]
