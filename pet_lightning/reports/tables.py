"""Tables of a report's cells against its baseline, as Markdown and CSV rows: mean ± std with significance marks
(beside a published table or not), better / same / worse per resource group, the spread by source of randomness,
and the mean beside the best seed."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pet_lightning.reports.cells import GROUP_LABELS, GROUPS, LEAKY_MARK, SEED_MODE_LABELS, Report
from pet_lightning.reports.stats import DOWN, UP, mean_of, significance, std_of, stouffer
from pet_lightning.reports.verdicts import holm

BETTER, SAME, WORSE = "↗", "→", "↘"
NOT_IN_PAPER = "not in paper"
# The Revisiting paper's Table 2 marks as printed in its CSV, as the arrows our table prints.
PAPER_MARKS = {"significantly better than FT": UP, "significantly worse than FT": DOWN}
MARKS_TEST = ("two one-tailed Welch t-tests against `{base}`, each at alpha = {alpha} (↑ p_greater < alpha, ↓ "
              "p_less < alpha; together a two-sided test at 2 x alpha, as the paper's caption); the CSV adds Holm-"
              "adjusted p values over every mark of the table")


class PaperFigures(Protocol):
    """What the tables read of a published table, in the study's names (:class:`~pet_lightning.studies.published.
    StudyTable`)."""

    def get(self, method: str, task: str, setting: str = "") -> float | None: ...

    def std(self, method: str, task: str, setting: str = "") -> float | None: ...

    def mark(self, method: str, task: str, setting: str = "") -> str | None: ...


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _delta(ours: float, paper: float | None) -> str:
    return "–" if paper is None or math.isnan(ours) else f"{ours - paper:+.1f}"


def cell_marks(report: Report) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (task, method) against the baseline: mark, both one-sided Welch p values and their Holm adjustment over
    every p of the table (the marks are 2 tests per cell; 16 cells at 0.05 each give about 1.6 false marks)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for task in report.tasks:
        base = report.cell(task, report.baseline)
        for method in report.methods:
            cell = report.cell(task, method)
            if cell is None or method == report.baseline or base is None:
                continue
            mark, p_greater, p_less = significance(cell.values, base.values, report.alpha)
            found[(task, method)] = {"mark": mark, "p_greater": p_greater, "p_less": p_less}
    keys = list(found)
    adjusted = holm([found[k]["p_greater"] for k in keys] + [found[k]["p_less"] for k in keys])
    for i, key in enumerate(keys):
        found[key].update(p_greater_holm=adjusted[i], p_less_holm=adjusted[len(keys) + i])
    return found


def mean_std_table(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """Markdown header, Markdown rows and CSV rows of the mean ± std table with significance marks (a row per task,
    then the average of each resource group over the tasks here). CSV: ``seeds`` on task rows, ``tasks`` on the
    ``avg_*`` rows (two columns, so that neither has two meanings)."""
    header = ["task", "group", "metric", *report.methods]
    rows, csv_rows = [], []
    marks = cell_marks(report)
    for task in report.tasks:
        group = report.group_of(task)
        row = [task, group, report.headline[task]]
        for method in report.methods:
            cell = report.cell(task, method)
            if cell is None:
                row.append("–")
                continue
            values = cell.values
            found = marks.get((task, method), {})
            mark = found.get("mark", "")
            mean, std = mean_of(values), std_of(values)
            row.append(f"{_fmt(mean)} ± {_fmt(std)}{mark}{LEAKY_MARK if cell.leaky else ''}")
            csv_rows.append(
                {"task": task, "group": group, "metric": report.headline[task], "method": method,
                 "seeds": len(values), "mean": mean, "std": std, "max": max(values),
                 "p_greater_than_baseline": found.get("p_greater", math.nan),
                 "p_less_than_baseline": found.get("p_less", math.nan),
                 "p_greater_holm": found.get("p_greater_holm", math.nan),
                 "p_less_holm": found.get("p_less_holm", math.nan), "mark": mark, "leaky": cell.leaky}
            )
        rows.append(row)
    for group in GROUPS:
        tasks = [t for t in report.tasks if report.group_of(t) == group]
        if not tasks:
            continue
        row = [f"avg {GROUP_LABELS[group]}", group, ""]
        for method in report.methods:
            means = group_average(report, method, tasks)
            row.append(_fmt(means))
            if not math.isnan(means):
                csv_rows.append({"task": f"avg_{group}", "group": group, "metric": "", "method": method,
                                 "tasks": len(tasks), "mean": means})
        rows.append(row)
    return header, rows, csv_rows


def group_average(report: Report, method: str, tasks: list[str]) -> float:
    """The mean over ``tasks`` of the method's per-task means (NaN unless it ran every one): a display average
    like the paper's "Avg.", mixing metrics; no test is run on it."""
    cells = [report.cell(t, method) for t in tasks]
    if not tasks or any(cell is None for cell in cells):
        return math.nan
    return mean_of([mean_of(cell.values) for cell in cells if cell is not None])


def paper_cell(paper: PaperFigures | None, method: str, task: str) -> str:
    """The paper's ``value ± std`` and its mark for one cell, or ``not in paper``."""
    value = paper.get(method, task) if paper is not None else None
    if value is None:
        return NOT_IN_PAPER
    std = paper.std(method, task)
    mark = PAPER_MARKS.get(paper.mark(method, task) or "", "")
    return f"{value:.1f}" + (f" ± {std:.1f}" if std is not None else "") + mark


def mean_std_beside_paper(report: Report, paper: PaperFigures | None, paper_metric: Mapping[str, str]
                          ) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """The mean ± std table in the Revisiting paper's shape (a row per method, a column per task): ours (mean ± std
    and our mark), the paper's figure ± std and its mark, and the difference of the means, for every task; then per
    resource group our average over our tasks beside the paper's average over the same tasks (never its printed
    ``avg_*``, which averages other tasks). ``paper_metric``: the paper's name of each task's metric, for the
    header."""
    marks = cell_marks(report)
    header = ["method"]
    for task in report.tasks:
        header += [f"{task}: ours ({report.headline[task]})", f"paper ({paper_metric.get(task, '?')})", "Δ"]
    groups = [g for g in GROUPS if any(report.group_of(t) == g for t in report.tasks)]
    for group in groups:
        header += [f"avg {group}: ours", "paper, same tasks", "Δ"]
    rows, csv_rows = [], []
    for method in report.methods:
        row = [method]
        for task in report.tasks:
            cell = report.cell(task, method)
            paper_value = paper.get(method, task) if paper is not None else None
            if cell is None:
                row += ["–", paper_cell(paper, method, task), "–"]
                continue
            found = marks.get((task, method), {})
            mean, std = mean_of(cell.values), std_of(cell.values)
            row += [f"{_fmt(mean)} ± {_fmt(std)}{found.get('mark', '')}{LEAKY_MARK if cell.leaky else ''}",
                    paper_cell(paper, method, task), _delta(mean, paper_value)]
            csv_rows.append({
                "task": task, "group": report.group_of(task), "metric": report.headline[task], "method": method,
                "seeds": len(cell.values), "mean": mean, "std": std, "mark": found.get("mark", ""),
                "p_greater_than_baseline": found.get("p_greater", math.nan),
                "p_less_than_baseline": found.get("p_less", math.nan),
                "p_greater_holm": found.get("p_greater_holm", math.nan),
                "p_less_holm": found.get("p_less_holm", math.nan),
                "paper_metric": paper_metric.get(task, ""), "paper": paper_value,
                "paper_std": paper.std(method, task) if paper is not None else None,
                "paper_mark": PAPER_MARKS.get((paper.mark(method, task) if paper is not None else None) or "", ""),
                "delta": math.nan if paper_value is None else mean - paper_value, "leaky": cell.leaky})
        for group in groups:
            tasks = [t for t in report.tasks if report.group_of(t) == group]
            ours = group_average(report, method, tasks)
            theirs = [paper.get(method, t) if paper is not None else None for t in tasks]
            same = None if any(v is None for v in theirs) else mean_of([v for v in theirs if v is not None])
            row += [_fmt(ours), NOT_IN_PAPER if same is None else f"{same:.1f}", _delta(ours, same)]
            csv_rows.append({"task": f"avg_{group}", "group": group, "method": method, "tasks": len(tasks),
                             "mean": ours, "paper_same_tasks": same,
                             "delta": math.nan if same is None else ours - same})
        rows.append(row)
    return header, rows, csv_rows


def group_test(report: Report, method: str, group: str) -> tuple[float, float, int] | None:
    """``(p_greater, p_less, seeds)`` of ``method`` against the baseline over a group's tasks: one-tailed Welch per
    task, combined with equal weights (Stouffer), so that no task's metric scale decides the group. None when a
    task of the group lacks 2+ seeds on either side."""
    tasks = [t for t in report.tasks if report.group_of(t) == group]
    per_task, seeds = [], []
    for task in tasks:
        cell, base = report.cell(task, method), report.cell(task, report.baseline)
        if cell is None or base is None or len(cell.values) < 2 or len(base.values) < 2:
            return None
        per_task.append(significance(cell.values, base.values, report.alpha)[1])
        seeds.append(min(len(cell.values), len(base.values)))
    if not per_task:
        return None
    p_greater, p_less = stouffer(per_task)
    return p_greater, p_less, min(seeds)


def group_trend_table(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """↗ / → / ↘ per method and resource group (see :func:`group_test`)."""
    groups = [g for g in GROUPS if any(report.group_of(t) == g for t in report.tasks)]
    header = ["method", *(GROUP_LABELS[g] for g in groups)]
    rows, csv_rows = [], []
    for method in report.methods:
        if method == report.baseline:
            continue
        row = [method]
        for group in groups:
            found = group_test(report, method, group)
            if found is None:
                row.append("?")
                continue
            p_greater, p_less, seeds = found
            trend = BETTER if p_greater < report.alpha else WORSE if p_less < report.alpha else SAME
            row.append(trend)
            csv_rows.append({"method": method, "group": group, "trend": trend,
                             "tasks": sum(1 for t in report.tasks if report.group_of(t) == group),
                             "p_greater_than_baseline": p_greater, "p_less_than_baseline": p_less, "seeds": seeds})
        rows.append(row)
    return header, rows, csv_rows


def seed_source_table(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    modes = [m for m in SEED_MODE_LABELS if any(key[2] == m for key in report.cells)]
    header = ["task", "method", *(f"std {SEED_MODE_LABELS[m]}" for m in modes)]
    rows, csv_rows = [], []
    for task, method, present in report.cells_by_mode(modes):
        row = [task, method]
        for mode, cell in present.items():
            std = std_of(cell.values) if cell else math.nan
            row.append(f"{_fmt(std, 2)} (n={len(cell.values)})" if cell else "–")
            if cell:
                csv_rows.append({"task": task, "method": method, "seed_mode": mode, "source":
                                 SEED_MODE_LABELS[mode], "seeds": len(cell.values), "std": std,
                                 "mean": mean_of(cell.values)})
        rows.append(row)
    return header, rows, csv_rows


def upper_bound_table(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    header = ["task", "method", "seeds", "mean", "max (upper bound)", "max - mean", "train steps",
              "steps at selected ckpt"]
    rows, csv_rows = [], []
    for task in report.tasks:
        for method in report.methods:
            cell = report.cell(task, method)
            if cell is None:
                continue
            values = cell.values
            mean, top = mean_of(values), max(values)
            steps, best = mean_of(cell.steps), mean_of(cell.best_steps)
            rows.append([task, method, str(len(values)), _fmt(mean), _fmt(top), _fmt(top - mean), _fmt(steps, 0),
                         _fmt(best, 0)])
            csv_rows.append({"task": task, "method": method, "n": len(values), "mean": mean, "max": top,
                             "gap": top - mean, "steps_mean": steps, "best_step_mean": best, "leaky": cell.leaky})
    return header, rows, csv_rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
