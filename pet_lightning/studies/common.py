"""What every study layout shares: checking the records are one study at one scale, cells with spreads,
the published column and its difference, verdict words, and writing a table as Markdown + CSV."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pet_lightning.reports.cells import Cell, Report
from pet_lightning.reports.stats import mean_of, std_of
from pet_lightning.reports.tables import markdown_table, write_csv
from pet_lightning.reports.verdicts import FINDINGS_HEADER, Finding, finding_row
from pet_lightning.sweeps.files import SweepError

REPRODUCES, DIFFERS, UNTESTABLE = "reproduces", "does not reproduce", "not testable here"
# The same direction as the paper, but not significant at alpha (e.g. Kendall's tau over 4 rows can never be).
INCONCLUSIVE = "same direction, not significant"
COLLAPSE_MARK = "‡"


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def fmt_p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.3g}"


@dataclass
class StudyRuns:
    """The records of one study at one scale, with what its report header states."""

    study: str
    scale: str
    records: list[dict[str, Any]]
    backbones: list[str]
    wall_s: float

    @property
    def header(self) -> str:
        protocols = sorted({str(r.get("protocol")) for r in self.records})
        monitors = sorted({str(r.get("monitor")) for r in self.records})
        seeds = sorted({int(r["seed"]) for r in self.records})
        reused = [r for r in self.records if r.get("reused_from")]
        # A reused run trained once, for another sweep: say so, so that its time is not read as this study's.
        sources = sorted({"/".join(Path(r["reused_from"]["results"]).parts[-3:-1]) for r in reused})
        shared = f" ({len(reused)} reused from the identical runs of {', '.join(sources)})" if reused else ""
        return (f"Scale `{self.scale}`, backbone {', '.join(self.backbones)}; {len(self.records)} runs{shared}, seeds "
                f"{', '.join(map(str, seeds))}; protocol {', '.join(protocols)} (selected on "
                f"{', '.join(monitors)} over the selection half, reported on the other half); summed run time "
                f"{self.wall_s / 60:.1f} min. Scores: the reported split's headline metric x 100.")


def study_runs(records: list[dict[str, Any]], study: str) -> StudyRuns:
    """Check that ``records`` are finished runs of ``study`` at one scale."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    if not ok:
        raise SweepError(f"no finished runs of study {study} in the results: run its study file first")
    studies = sorted({str(r.get("study")) for r in ok})
    if studies != [study]:
        raise SweepError(f"the results hold runs of {', '.join(studies)}, not only of study {study}: report each "
                         "study's results.jsonl on its own")
    scales = sorted({str(r.get("scale")) for r in ok})
    if len(scales) != 1:
        raise SweepError(f"the results mix scales {', '.join(scales)} of study {study}: report one scale at a time")
    return StudyRuns(study, scales[0], ok, _backbones(ok), sum(float(r.get("wall_s") or 0) for r in ok))


def _backbones(records: list[dict[str, Any]]) -> list[str]:
    names = set()
    for record in records:
        path = Path(str(record.get("config_path", "")))
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except yaml.YAMLError:
            config = {}
        names.add(str((config.get("model") or {}).get("backbone", "?")))
    return sorted(names)


def cell_text(cell: Cell | None) -> str:
    """``mean ± std`` over seeds (``‡k`` when k seeds collapsed to constant predictions, scored 0)."""
    if cell is None:
        return "–"
    values = cell.values
    text = f"{fmt(mean_of(values))} ± {fmt(std_of(values))}"
    return text + (f" {COLLAPSE_MARK}{len(cell.collapsed)}" if cell.collapsed else "")


def cell_mean(cell: Cell | None) -> float:
    return math.nan if cell is None else mean_of(cell.values)


def difference(ours: float, published: float | None) -> str:
    if published is None or math.isnan(ours):
        return "–"
    return f"{ours - published:+.1f}"


def task_header(report: Report, tasks: list[str]) -> list[str]:
    """``<task> (<metric>) | paper | Δ`` for each task: the columns of a table beside a published one."""
    return [column for task in tasks for column in (f"{task} ({report.headline[task]})", "paper", "Δ")]


def published_cells(report: Report, method: str, task: str, published) -> tuple[list[str], float, float | None]:
    """Ours (mean ± std), the published figure and the difference for one cell; also our mean and the figure."""
    cell = report.cell(task, method)
    paper = published.get(method, task) if published else None
    return [cell_text(cell), fmt(paper), difference(cell_mean(cell), paper)], cell_mean(cell), paper


def trainable_pct(records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean % trainable parameters per method (head included) over its runs."""
    found: dict[str, list[float]] = defaultdict(list)
    for record in records:
        if record.get("trainable_pct") is not None:
            found[record["method"]].append(float(record["trainable_pct"]))
    return {method: mean_of(values) for method, values in found.items()}


def seed_average(report: Report, method: str, tasks: Sequence[str]) -> dict[int, float]:
    """Per seed, the average over ``tasks`` of ``method``'s score (seeds that ran every task only)."""
    cells = [report.cell(task, method) for task in tasks]
    if any(cell is None for cell in cells):
        return {}
    seeds = set.intersection(*(set(cell.scores) for cell in cells))
    return {seed: mean_of([cell.scores[seed] for cell in cells]) for seed in sorted(seeds)}


def collapse_note(report: Report) -> str:
    listed = [f"{method} on {task} (seeds {', '.join(map(str, cell.collapsed))})"
              for (task, method, _mode), cell in report.cells.items() if cell.collapsed]
    if not listed:
        return ""
    return (f"> {COLLAPSE_MARK}k: k seeds predicted a constant (correlation undefined), scored 0: "
            + "; ".join(listed) + ".\n")


def write_table(out: Path, name: str, header: list[str], rows: list[list[str]],
                csv_rows: list[dict[str, Any]]) -> tuple[str, dict[str, Path]]:
    """Write ``<name>.md`` and ``<name>.csv``; returns the Markdown and both paths."""
    text = markdown_table(header, rows) if rows else "(no runs for this table yet)\n"
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    write_csv(out / f"{name}.csv", csv_rows)
    return text, {name: out / f"{name}.md", f"{name}_csv": out / f"{name}.csv"}


def findings_table(findings: Sequence[Finding], note: str = "") -> str:
    """``## Findings``: one row per claim with its verdict, p, effect, MDE, the paper's effect and the seeds that
    would detect it (:mod:`pet_lightning.reports.verdicts`), then what the four verdict words mean."""
    rows = [finding_row(finding) for finding in findings]
    legend = ("Verdicts: **reproduces** = significant in the paper's direction; **contradicted** = significant in "
              "the opposite direction; **inconclusive** = not significant although the test could detect the "
              "paper's effect (MDE at or below it); **underpowered** = not significant and the paper's effect is "
              "below what this test could detect. Effects are signed so that + is the paper's direction.\n")
    body = markdown_table(FINDINGS_HEADER, rows) if rows else "(no findings: no runs for the claims yet)\n"
    return "## Findings\n\n" + body + "\n" + (note + "\n" if note else "") + legend


def findings_section(findings: list[tuple[str, str, str]]) -> str:
    """``## Findings`` as a table of (claim, verdict, evidence)."""
    rows = [[claim, f"**{verdict}**", evidence] for claim, verdict, evidence in findings]
    return "## Findings\n\n" + markdown_table(["claim of the paper", "verdict here", "evidence"], rows)
