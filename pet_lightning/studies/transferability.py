"""Report layouts of the transferability study (AkbarTajari et al., EMNLP 2022): Table 1 (here) and Table 3
(:mod:`pet_lightning.studies.transferability_table3`).

Table 1: rows = the modules that train, columns = %Param, each of the paper's task columns (ours mean ± std, the
paper's figure ± its std, the difference) and Avg beside the paper re-averaged over the same columns. Every column
is scored on the paper's metric (STS-B Spearman; MNLI as two columns, matched and mismatched accuracy). The
findings test the paper's row order (one-sided Kendall per column and on the average, Holm over the scopes) and
"Frozen and Random below LayerNorms and BitFit" (an intersection of one-sided Welch tests, each beside the paper's
own gap on that column), in the four-word vocabulary of :mod:`pet_lightning.reports.verdicts`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from pet_lightning.reports.cells import Report, build_report
from pet_lightning.reports.stats import mean_of, std_of
from pet_lightning.reports.tables import markdown_table
from pet_lightning.reports.verdicts import (
    FINDINGS_HEADER,
    Finding,
    all_of,
    finding_row,
    holm_family,
    kendall_finding,
    welch_finding,
)
from pet_lightning.studies.common import (
    StudyRuns,
    cell_mean,
    cell_text,
    collapse_note,
    findings_table,
    fmt,
    trainable_pct,
    write_table,
)
from pet_lightning.studies.published import PaperNames, StudyTable, load_study_table
from pet_lightning.studies.registry import layout
from pet_lightning.studies.transferability_table3 import band_of, depth_overlap, write_table3

__all__ = ["TABLE1_NAMES", "band_of", "depth_overlap", "write_table1", "write_table3"]

NOT_IN_PAPER = "(not in the paper)"
TABLE1_NAMES = PaperNames(
    rows={
        "full_ft": "Full-FT", "feed_forward": "Feed-Forward", "multi_head": "Multi-Head", "layernorms": "LayerNorms",
        "layernorms_a": "LayerNorms_A", "layernorms_f": "LayerNorms_F", "bitfit": "BitFit", "random": "Random",
        "frozen": "Frozen",
    },
    # Our MNLI runs fill two of the paper's columns: matched (their headline) and mismatched (SECOND_COLUMNS).
    tasks={"mnli": "mnli-m"},
    metrics={"sts-b": "spearman"},
    metric_note=("Metrics, as the paper's caption states: CoLA Matthews correlation (`mcc`), MRPC and QQP F1, "
                 "STS-B Spearman correlation (`spearman`, not our Pearson headline), accuracy otherwise; MNLI in two "
                 "columns, matched (mnli-m, `accuracy`) and mismatched (mnli-mm, `accuracy_mismatched`)."),
)
# A paper column read from another task's runs: column -> (our task, key of record["report"]).
SECOND_COLUMNS = {"mnli-mm": ("mnli", "accuracy_mismatched")}
# The paper's summary columns, never tasks: %Param is shown beside ours, Avg is re-averaged over our columns.
PARAM_COLUMN = "param_pct"
WEAK_ROWS, STRONG_ROWS = ("frozen", "random"), ("layernorms", "bitfit")
MAX_DISCORDANT_LISTED = 4


def _row_name(method: str) -> str:
    return TABLE1_NAMES.rows.get(method, method)


def _column(task: str) -> str:
    """The paper's name of one of our columns (``mnli`` -> ``mnli-m``)."""
    return TABLE1_NAMES.tasks.get(task, task)


def paper_text(published: StudyTable | None, method: str, task: str, marks: dict[str, str], digits: int = 1) -> str:
    """The paper's figure ± its std (with a footnote mark), or ``(not in the paper)``."""
    figure = published.figure(method, task) if published else None
    if figure is None or math.isnan(figure.value):
        return NOT_IN_PAPER
    text = f"{figure.value:.{digits}f}" + ("" if math.isnan(figure.std) else f" ± {figure.std:.{digits}f}")
    if figure.mark:
        symbol = marks.setdefault(figure.mark, "*" * (len(marks) + 1))
        text += f" {symbol}"
    return text


def _delta(ours: float, paper: float | None) -> str:
    return "–" if paper is None or math.isnan(ours) else f"{ours - paper:+.1f}"


def _table1_report(records: list[dict[str, Any]], alpha: float) -> Report:
    """Cells per (column, method): the tasks on the paper's metric, plus MNLI's mismatched column."""
    report = build_report(records, baseline="full_ft", alpha=alpha, metrics=TABLE1_NAMES.metrics)
    for column, (task, metric) in SECOND_COLUMNS.items():
        if task not in report.tasks:
            continue
        second = build_report([r for r in records if r["task"] == task], baseline="full_ft", alpha=alpha,
                              metrics={task: metric})
        for (_task, method, mode), cell in second.cells.items():
            report.cells[(column, method, mode)] = cell
        report.tasks.insert(report.tasks.index(task) + 1, column)
        report.headline[column] = metric
        report.groups[column] = report.groups[task]
        report.official_groups[column] = report.official_groups[task]
    order = list(TABLE1_NAMES.rows)
    report.methods = [m for m in order if m in report.methods] + [m for m in report.methods if m not in order]
    return report


def _average(values: list[float | None]) -> float | None:
    """The plain mean, as the paper's Avg column is; None when any column lacks a figure."""
    if not values or any(v is None or math.isnan(v) for v in values):
        return None
    return mean_of(values)


def _order_findings(report: Report, published: StudyTable | None, averages: dict[str, tuple]) -> list[Finding]:
    """Kendall's tau of our row order against the paper's, per column and on the average, one Holm family."""
    scopes: list[tuple[str, dict[str, tuple[float, float]]]] = []
    for task in report.tasks:
        pairs = {}
        for method in report.methods:
            paper = published.get(method, task) if published else None
            mine = cell_mean(report.cell(task, method))
            if paper is not None and not math.isnan(mine):
                pairs[method] = (mine, paper)
        scopes.append((_column(task), pairs))
    if len(report.tasks) > 1:
        scopes.append(("avg", {m: (ours, paper) for m, (ours, paper) in averages.items()
                               if ours is not None and paper is not None}))
    scopes = [(label, pairs) for label, pairs in scopes if len(pairs) >= 2]
    if not scopes:
        return []
    # The MDE at alpha / m: the level Holm's first step asks of the smallest p, so "underpowered" says the family
    # could not have reproduced at all (4 rows: p >= 1/24, never below 0.05 / 3).
    level = report.alpha / len(scopes)
    findings = []
    for label, pairs in scopes:
        rows = list(pairs)
        ours, theirs = [pairs[m][0] for m in rows], [pairs[m][1] for m in rows]
        detail = f"rows {', '.join(_row_name(m) for m in rows)}; {_discordant(rows, ours, theirs)}"
        findings.append(kendall_finding(f"row order ({label}) matches the paper's (Kendall's tau > 0)", ours,
                                        theirs, level, detail))
    return holm_family(findings, report.alpha)


def _discordant(rows: list[str], ours: list[float], theirs: list[float]) -> str:
    """The pairs of rows the two orders disagree on (a tie on one side is not a disagreement)."""
    found = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            if (ours[i] - ours[j]) * (theirs[i] - theirs[j]) < 0:
                sign = ">" if ours[i] > ours[j] else "<"
                found.append(f"{_row_name(rows[i])} {sign} {_row_name(rows[j])} here, "
                             f"{'<' if sign == '>' else '>'} in the paper")
    if not found:
        return "no discordant pair"
    listed = found[:MAX_DISCORDANT_LISTED]
    more = f" (+{len(found) - len(listed)} more)" if len(found) > len(listed) else ""
    return f"{len(found)} discordant: " + "; ".join(listed) + more


def _weak_below_strong(report: Report, published: StudyTable | None) -> tuple[Finding | None, list[Finding]]:
    """Frozen and Random below LayerNorms and BitFit on every column: one one-sided Welch test per pair, each beside
    the paper's own gap on that column; the claim is their intersection."""
    members = []
    for task in report.tasks:
        for weak in WEAK_ROWS:
            for strong in STRONG_ROWS:
                low, high = report.cell(task, weak), report.cell(task, strong)
                if low is None or high is None:
                    continue
                p_strong = published.get(strong, task) if published else None
                p_weak = published.get(weak, task) if published else None
                paper = None if p_strong is None or p_weak is None else p_strong - p_weak
                detail = (f"paper {p_strong:.1f} − {p_weak:.1f}" if paper is not None
                          else "no paper figure for this pair")
                members.append(welch_finding(f"{_column(task)}: {_row_name(strong)} > {_row_name(weak)}",
                                             high.values, low.values, paper, report.alpha, detail=detail))
    if not members:
        return None, []
    claim = all_of("Frozen and Random fall below LayerNorms and BitFit", members, report.alpha)
    weakest = max(members, key=lambda f: f.p if not math.isnan(f.p) else 2.0)
    detail = (f"intersection of {len(members)} pairs (every pair must reproduce; no adjustment needed); the "
              f"weakest, {weakest.claim}, speaks: {weakest.detail}; every pair is listed below")
    return replace(claim, detail=detail), members


@layout("transferability_table1")
def write_table1(runs: StudyRuns, out: Path, alpha: float) -> dict[str, Path]:
    report = _table1_report(runs.records, alpha)
    published = load_study_table("transferability_table1", TABLE1_NAMES)
    tasks, pct, marks = report.tasks, trainable_pct(runs.records), {}
    header = ["Method", "%Param (ours)", "paper %Param"]
    header += [name for task in tasks for name in (f"{_column(task)} ({report.headline[task]})", "paper", "Δ")]
    header += ["Avg (ours, same columns)", "paper, same tasks", "Δ"]
    rows, csv_rows, averages = [], [], {}
    for method in report.methods:
        row = [_row_name(method), fmt(pct.get(method), 4), paper_text(published, method, PARAM_COLUMN, marks, 2)]
        csv_row: dict[str, Any] = {"method": method, "paper_row": TABLE1_NAMES.rows.get(method, ""),
                                   "param_pct": pct.get(method),
                                   "param_pct_paper": published.get(method, PARAM_COLUMN) if published else None}
        ours_means, paper_means = [], []
        for task in tasks:
            cell = report.cell(task, method)
            mean = cell_mean(cell)
            paper = published.get(method, task) if published else None
            ours_means.append(mean)
            paper_means.append(paper)
            row += [cell_text(cell), paper_text(published, method, task, marks), _delta(mean, paper)]
            column = _column(task)
            csv_row.update({f"{column}_mean": mean, f"{column}_std": std_of(cell.values) if cell else None,
                            f"{column}_n": len(cell.values) if cell else 0, f"{column}_paper": paper,
                            f"{column}_paper_std": published.std(method, task) if published else None})
        average, paper_average = _average(ours_means), _average(paper_means)
        averages[method] = (average, paper_average)
        row += [fmt(average), NOT_IN_PAPER if paper_average is None else fmt(paper_average),
                _delta(math.nan if average is None else average, paper_average)]
        csv_row.update({"avg": average, "avg_paper_same_tasks": paper_average})
        rows.append(row)
        csv_rows.append(csv_row)
    table, paths = write_table(out, "table1", header, rows, csv_rows)
    order = _order_findings(report, published, averages)
    weak, members = _weak_below_strong(report, published)
    findings = order + ([weak] if weak is not None else [])
    source = published.citation.rstrip(".") if published else "no published Table 1 stored"
    page = [
        "# Transferability study, Table 1: which modules carry the task\n",
        runs.header + "\n",
        TABLE1_NAMES.metric_note + " Each column header names our metric; `paper` is the paper's figure ± its std "
        "over seeds on the same metric, Δ = ours − paper; a cell the paper has no figure for says "
        f"{NOT_IN_PAPER}. Δ is descriptive: the paper's figures are BERT-base on the full dev sets, ours the backbone "
        "above on the reported half, so it carries no error bar and no test.\n",
        f"Published figures: {source}. The paper's "
        "Avg is over its 9 columns; `paper, same tasks` re-averages its figures over our columns only, beside our "
        "Avg over the same columns (a plain mean across metrics, as the paper's).\n",
        "## Table 1: mean ± std over seeds\n", table, _marks_note(marks), collapse_note(report),
        findings_table(findings, _findings_note(order)),
    ]
    if members:
        page += ["### The pairs of \"Frozen and Random fall below LayerNorms and BitFit\"\n",
                 markdown_table(FINDINGS_HEADER, [finding_row(f) for f in members])]
    # The resolution section on the metrics the table compares (MNLI: both of its columns).
    compared: dict[str, Any] = {task: report.headline[task] for task in tasks if task not in SECOND_COLUMNS}
    for task, metric in SECOND_COLUMNS.values():
        if task in compared:
            compared[task] = (compared[task], metric)
    page.append(runs.resolution(compared))
    (out / "report.md").write_text("\n".join(page), encoding="utf-8")
    paths["report"] = out / "report.md"
    return paths


def _marks_note(marks: dict[str, str]) -> str:
    return "".join(f"> {symbol} {mark}.\n" for mark, symbol in marks.items())


def _findings_note(order: list[Finding]) -> str:
    if not order:
        return ""
    return (f"Row order: Kendall's tau-b of our means against the paper's figures over the rows both have, "
            f"one-sided (tau > 0), Holm over the {len(order)} scopes as one family (the avg scope is not "
            "independent of the columns; Holm holds under any dependence); MDE = the smallest tau these rows can "
            f"show significant at alpha / {len(order)}, the paper's effect its own order (tau = 1). Caveat: the "
            "test rejects independence of the two orders, not \"the orders match\": with Frozen and Random far "
            "below the rest, tau > 0 is nearly certain, so read tau and the discordant pairs; our means are taken "
            "as exact (seed noise is not in this test), and so are the paper's, several of which tie within their "
            "stds. Frozen / Random below LayerNorms / BitFit: one-sided Welch per pair over seeds, the paper's "
            "effect = its own gap on that column and metric.")
