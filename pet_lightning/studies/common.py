"""What every study layout shares: checking the records are one study at one scale, cells with spreads,
the published column and its difference, verdict words, and writing a table as Markdown + CSV."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pet_lightning.errors import StudyError
from pet_lightning.reports.cells import Cell, Report
from pet_lightning.reports.examples import resolution_section
from pet_lightning.reports.stats import mean_of, std_of
from pet_lightning.reports.tables import markdown_table, write_csv
from pet_lightning.reports.verdicts import FINDINGS_HEADER, Finding, finding_row
from pet_lightning.sweeps.records import PROVENANCE_PACKAGES

COLLAPSE_MARK = "‡"


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def fmt_p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.3g}"


@dataclass
class StudyRuns:
    """The records of one study at one scale, with what its report header states.

    Everything the header says comes from the records (never from the environment the report is written in), so
    a report regenerated from committed records is byte for byte the same.
    """

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
        sources = sorted({"/".join(_source_folder(r["reused_from"]["results"])) for r in reused})
        shared = f" ({len(reused)} reused from the identical runs of {', '.join(sources)})" if reused else ""
        # Each record says how its protocol split the data (``dev half 1 selects, ...``, ``10% of train ...``).
        splits = sorted({str(r.get("split", "")).split(": ", 1)[-1] for r in self.records if r.get("split")})
        return (f"Scale `{self.scale}`, backbone {', '.join(self.backbones)}; {len(self.records)} runs{shared}, seeds "
                f"{', '.join(map(str, seeds))}; protocol {', '.join(protocols)} (selected on "
                f"{', '.join(monitors)}; {'; '.join(splits) or 'split not recorded'}); summed run time "
                f"{self.wall_s / 60:.1f} min. Scores: the reported split's metric x 100 (each table names its metric)."
                "\n\n"
                + provenance_text(self.records) + differences_text(self.records))

    def resolution(self, metrics: dict[str, Any] | None = None, results_dir: str | Path | None = None) -> str:
        """``## Resolution of the reported split`` of these runs (:func:`pet_lightning.reports.examples.
        resolution_section`): ``metrics`` = task -> the ``report`` key(s) the layout's tables compare (e.g. a
        built report's ``headline``); the predictions are read beside the results file the records came from."""
        return resolution_section(self.records, results_dir, metrics)


def study_runs(records: list[dict[str, Any]], study: str) -> StudyRuns:
    """Check that ``records`` are finished runs of ``study`` at one scale."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    if not ok:
        raise StudyError(f"no finished runs of study {study} in the results: run its study file first")
    studies = sorted({str(r.get("study")) for r in ok})
    if studies != [study]:
        raise StudyError(f"the results hold runs of {', '.join(studies)}, not only of study {study}: report each "
                         "study's results.jsonl on its own")
    scales = sorted({str(r.get("scale")) for r in ok})
    if len(scales) != 1:
        raise StudyError(f"the results mix scales {', '.join(scales)} of study {study}: report one scale at a time")
    return StudyRuns(study, scales[0], ok, _backbones(ok), sum(float(r.get("wall_s") or 0) for r in ok))


def _backbones(records: list[dict[str, Any]]) -> list[str]:
    """The backbones the records name (records from before issue 34 name none: ``?``)."""
    return sorted({str(record.get("backbone") or "?") for record in records})


def _source_folder(results: str) -> tuple[str, ...]:
    """The last two folders above a reused run's source results file (``..`` of a relative path left out)."""
    return tuple(part for part in Path(results).parts[:-1] if part not in ("..", "."))[-2:]


def _short_commit(commit: str) -> str:
    base, dirty = commit.removesuffix("-dirty"), commit.endswith("-dirty")
    # A locally modified tree ran the code: the commit alone does not name it.
    return base[:12] + (" with uncommitted changes" if dirty else "")


def _provenance_line(provenance: dict[str, Any]) -> str:
    versions = provenance.get("versions") or {}
    # The order (torch, transformers, peft, lightning), then any other package a record names.
    names = [*(name for name in PROVENANCE_PACKAGES if name in versions),
             *sorted(name for name in versions if name not in PROVENANCE_PACKAGES)]
    machine = f"CPU {provenance.get('cpu') or 'unknown'}"
    if provenance.get("gpu"):
        machine = f"GPU {provenance['gpu']}, {machine}"
    return (f"code at commit {_short_commit(str(provenance.get('commit') or 'unknown'))}; "
            f"{', '.join(f'{name} {versions[name]}' for name in names) or 'package versions unknown'}; "
            f"machine {machine}")


def differences_text(records: list[dict[str, Any]]) -> str:
    """The scale's ``deliberate_differences`` (what it knowingly does otherwise than the study's code, and why), as
    its records carry them: a paragraph per item, in the study file's order; empty when the records name none."""
    differences: dict[str, str] = {}
    for record in records:
        differences.update(record.get("deliberate_differences") or {})
    if not differences:
        return ""
    items = "\n".join(f"- **{name}**: {' '.join(str(text).split())}" for name, text in differences.items())
    return "\n\nDeliberate differences from the study's code (the study file's `deliberate_differences`):\n\n" + items


def provenance_text(records: list[dict[str, Any]]) -> str:
    """What the runs came from, as their records say (``provenance``, written at run time): the code's commit,
    the package versions and the machine; runs that differ are counted per combination, most runs first. Records
    from before issue 34 carry none: said so, with their count."""
    lines: dict[str, int] = defaultdict(int)
    for record in records:
        if isinstance(record.get("provenance"), dict):
            lines[_provenance_line(record["provenance"])] += 1
    missing = len(records) - sum(lines.values())
    if not lines:
        return f"Provenance: not recorded (the {len(records)} records are from before issue 34)."
    absent = f"; {missing} of {len(records)} runs carry none (recorded before issue 34)" if missing else ""
    if len(lines) == 1 and not missing:
        return f"Provenance (from the records): {next(iter(lines))}."
    ordered = sorted(lines.items(), key=lambda item: (-item[1], item[0]))
    counted = [f"{count} run{'s' if count != 1 else ''}: {line}" for line, count in ordered]
    return "Provenance (from the records): " + " / ".join(counted) + absent + "."


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
