"""Studies: the grids the seed papers ran (``configs/studies/*.yaml``), their report layouts and published tables.

A study file is a sweep file with a ``study`` key naming its layout here and ``scales`` (``cpu``, ``paper``). Its
records carry ``study`` and ``scale``; ``python cli.py report`` finds the layout from them and writes the tables
in the paper's shape, the published figures beside ours (:mod:`pet_lightning.studies.published`), and findings
that test the paper's claims on our numbers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Layout name -> "module:function" writing its report (records, out folder, alpha) -> {name: path}.
LAYOUTS = {
    "transferability_table1": "pet_lightning.studies.transferability:write_table1",
    "transferability_table3": "pet_lightning.studies.transferability:write_table3",
    "eh_ft_table1": "pet_lightning.studies.eh_ft:write_table1",
    "eh_ft_figure4": "pet_lightning.studies.tsne:write_figure4",
    "revisiting_table1": "pet_lightning.studies.revisiting_table1:write_table1",
    "revisiting_table2": "pet_lightning.studies.revisiting:write_table2",
    "revisiting_table4": "pet_lightning.studies.revisiting_table4:write_table4",
    "revisiting_figure3": "pet_lightning.studies.revisiting_figures:write_figure3",
    "revisiting_figure4": "pet_lightning.studies.revisiting:write_figure4",
    "revisiting_figure5": "pet_lightning.studies.revisiting_figures:write_figure5",
    "revisiting_iterations": "pet_lightning.studies.revisiting_figures:write_iterations",
}


def check_layout(name: str) -> None:
    """Refuse a study file whose ``study`` names no layout."""
    if name not in LAYOUTS:
        from pet_lightning.sweeps.files import SweepError

        raise SweepError(f"study {name!r} has no report layout: choose one of {', '.join(LAYOUTS)}")


def layout_writer(name: str) -> Callable[[list[dict[str, Any]], Path, float], dict[str, Path]]:
    check_layout(name)
    module, function = LAYOUTS[name].split(":")
    return getattr(importlib.import_module(module), function)


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
        from pet_lightning.sweeps.files import SweepError

        names = sorted(str(record.get("study")) for record in records)
        raise SweepError(f"these records belong to no single study ({', '.join(sorted(set(names)))}): report each "
                         "study's results.jsonl on its own")
    paths = layout_writer(study)(records, Path(out), alpha)
    report = paths.get("report")
    if report is not None and report.is_file():
        from pet_lightning.reports.examples import SECTION_TITLE, resolution_section

        text = report.read_text(encoding="utf-8")
        if SECTION_TITLE not in text:
            ok = [record for record in records if record.get("status", "ok") == "ok"]
            report.write_text(text.rstrip("\n") + "\n\n" + resolution_section(ok), encoding="utf-8")
    return paths
