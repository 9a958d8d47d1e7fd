"""The study's table shapes (Tables 2, 3, 4 and the upper bound), as Markdown and CSV rows."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from pet_lightning.reports.cells import GROUP_LABELS, GROUPS, LEAKY_MARK, SEED_MODE_LABELS, Report
from pet_lightning.reports.stats import DOWN, UP, mean_of, significance, std_of

BETTER, SAME, WORSE = "↗", "→", "↘"

def _fmt(value: float, digits: int = 1) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def table2(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """Markdown header, Markdown rows and CSV rows of the mean ± std table with significance marks."""
    header = ["task", "group", "metric", *report.methods]
    rows, csv_rows = [], []
    group_means: dict[tuple[str, str], list[float]] = defaultdict(list)
    base = report.baseline
    for task in report.tasks:
        group = report.group_of(task)
        row = [task, group, report.headline[task]]
        baseline_cell = report.cell(task, base)
        for method in report.methods:
            cell = report.cell(task, method)
            if cell is None:
                row.append("–")
                continue
            values = cell.values
            mark, p_greater, p_less = ("", math.nan, math.nan)
            if method != base and baseline_cell is not None:
                mark, p_greater, p_less = significance(values, baseline_cell.values, report.alpha)
            mean, std = mean_of(values), std_of(values)
            group_means[(group, method)].append(mean)
            row.append(f"{_fmt(mean)} ± {_fmt(std)}{mark}{LEAKY_MARK if cell.leaky else ''}")
            csv_rows.append(
                {"task": task, "group": group, "metric": report.headline[task], "method": method, "n": len(values),
                 "mean": mean, "std": std, "max": max(values), "p_greater_than_baseline": p_greater,
                 "p_less_than_baseline": p_less, "mark": mark, "leaky": cell.leaky}
            )
        rows.append(row)
    for group in GROUPS:
        if not any(report.group_of(t) == group for t in report.tasks):
            continue
        row = [f"avg {GROUP_LABELS[group]}", group, ""]
        for method in report.methods:
            means = group_means.get((group, method), [])
            n_tasks = sum(1 for t in report.tasks if report.group_of(t) == group)
            row.append(_fmt(mean_of(means)) if len(means) == n_tasks else "–")
            if len(means) == n_tasks:
                csv_rows.append({"task": f"avg_{group}", "group": group, "metric": "", "method": method,
                                 "n": len(means), "mean": mean_of(means)})
        rows.append(row)
    return header, rows, csv_rows


def _group_seed_averages(report: Report, method: str, group: str) -> list[float]:
    """Per-seed average over the group's tasks (seeds present in every task of the group)."""
    tasks = [t for t in report.tasks if report.group_of(t) == group]
    cells = [report.cell(t, method) for t in tasks]
    if not tasks or any(cell is None for cell in cells):
        return []
    seeds = set.intersection(*(set(cell.scores) for cell in cells))
    return [mean_of([cell.scores[seed] for cell in cells]) for seed in sorted(seeds)]


def table3(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    groups = [g for g in GROUPS if any(report.group_of(t) == g for t in report.tasks)]
    header = ["method", *(GROUP_LABELS[g] for g in groups)]
    rows, csv_rows = [], []
    for method in report.methods:
        if method == report.baseline:
            continue
        row = [method]
        for group in groups:
            scores = _group_seed_averages(report, method, group)
            baseline = _group_seed_averages(report, report.baseline, group)
            if len(scores) < 2 or len(baseline) < 2:
                row.append("?")
                continue
            mark, p_greater, p_less = significance(scores, baseline, report.alpha)
            trend = BETTER if mark == UP else WORSE if mark == DOWN else SAME
            row.append(trend)
            csv_rows.append({"method": method, "group": group, "trend": trend, "mean": mean_of(scores),
                             "baseline_mean": mean_of(baseline), "p_greater_than_baseline": p_greater,
                             "p_less_than_baseline": p_less, "seeds": len(scores)})
        rows.append(row)
    return header, rows, csv_rows


def table4(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    modes = [m for m in SEED_MODE_LABELS if any(key[2] == m for key in report.cells)]
    header = ["task", "method", *(f"std {SEED_MODE_LABELS[m]}" for m in modes)]
    rows, csv_rows = [], []
    for task in report.tasks:
        for method in report.methods:
            present = {m: report.cell(task, method, m) for m in modes}
            if all(cell is None for cell in present.values()):
                continue
            row = [task, method]
            for mode, cell in present.items():
                std = std_of(cell.values) if cell else math.nan
                row.append(f"{_fmt(std, 2)} (n={len(cell.values)})" if cell else "–")
                if cell:
                    csv_rows.append({"task": task, "method": method, "seed_mode": mode, "source":
                                     SEED_MODE_LABELS[mode], "n": len(cell.values), "std": std,
                                     "mean": mean_of(cell.values)})
            rows.append(row)
    return header, rows, csv_rows


def upper_bound(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
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
