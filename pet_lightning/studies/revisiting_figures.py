"""Figures 3 and 5 and the iterations finding of the "Revisiting Parameter-Efficient Tuning" study.

* Figure 3 (``revisiting_figure3``): the relative difference of prefix tuning to full fine-tuning on the upper
  bound (max over seeds), per task, as bars; the mean's difference beside it.
* Figure 5 (``revisiting_figure5``): score densities of Adapter, prefix and LoRA at three parameter scales (methods
  ``<family>_small`` / ``_medium`` / ``_large``), one panel per family.
* Iterations (``revisiting_iterations``): methods ``<method>@1k``, ``<method>@2k`` and ``<method>@1k_long`` (1k
  examples trained for as many steps as 2k): the study's claim is that the spread over seeds follows the number
  of training iterations, not the data size.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from pet_lightning.reports.cells import build_report
from pet_lightning.reports.figures import pyplot
from pet_lightning.reports.stats import mean_of, std_of
from pet_lightning.studies.common import (
    DIFFERS,
    INCONCLUSIVE,
    REPRODUCES,
    UNTESTABLE,
    collapse_note,
    findings_section,
    fmt,
    fmt_p,
    study_runs,
    trainable_pct,
    write_table,
)
from pet_lightning.studies.revisiting import _page, fewer_parameters_finding

FAMILIES = ("adapter", "prefix", "lora")
SIZES = ("small", "medium", "large")
CONDITION = re.compile(r"^(?P<method>.+)@(?P<condition>1k|2k|1k_long)$")


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_figure3(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "revisiting_figure3")
    report = build_report(runs.records, baseline="full", alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    rows, csv_rows, gaps = [], [], {}
    for task in report.tasks:
        full, prefix = report.cell(task, "full"), report.cell(task, "prefix")
        if full is None or prefix is None:
            continue
        top_full, top_prefix = max(full.values), max(prefix.values)
        gap = 100 * (top_prefix - top_full) / top_full if top_full else math.nan
        mean_gap = 100 * (mean_of(prefix.values) - mean_of(full.values)) / mean_of(full.values) \
            if mean_of(full.values) else math.nan
        gaps[task] = gap
        rows.append([task, fmt(top_full), fmt(top_prefix), fmt(gap), fmt(mean_gap)])
        csv_rows.append({"task": task, "max_full": top_full, "max_prefix": top_prefix, "relative_gap_max": gap,
                         "relative_gap_mean": mean_gap})
    text, paths = write_table(out, "figure3", ["task", "full (max)", "prefix (max)", "prefix vs full, max (%)",
                                               "prefix vs full, mean (%)"], rows, csv_rows)
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(max(4.0, 0.8 * len(gaps) + 2), 3.4))
    axis.bar(list(gaps), list(gaps.values()), color=["C3" if g < 0 else "C2" for g in gaps.values()])
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_ylabel("(max prefix - max full) / max full, %")
    axis.set_title("Prefix tuning vs full fine-tuning\non the upper bound (max over seeds)")
    paths["figure3_png"] = _save(plt, fig, out / "figure3.png")
    behind = [task for task, gap in gaps.items() if gap < 0]
    claim = "prefix tuning lags full fine-tuning even on the upper bound (max over seeds), on most tasks"
    verdict = UNTESTABLE if not gaps else REPRODUCES if len(behind) > len(gaps) / 2 else DIFFERS
    paths["report"] = _page(out, "Revisiting study, Figure 3: prefix tuning against full fine-tuning", runs, [
        "![figure 3](figure3.png)\n", text, collapse_note(report),
        findings_section([(claim, verdict, f"behind on {len(behind)} of {len(gaps)} tasks: {', '.join(behind)}")])])
    return paths


def _density(axis, values: list[float], label: str, color: str) -> None:
    data = np.array(values)
    if len(data) >= 2 and data.std() > 0:
        grid = np.linspace(data.min() - 2 * data.std(), data.max() + 2 * data.std(), 200)
        axis.plot(grid, stats.gaussian_kde(data)(grid), color=color, label=label)
    else:
        axis.axvline(float(data.mean()), color=color, linestyle="--", label=f"{label} (no spread)")
    axis.plot(data, np.zeros_like(data), "|", color=color, markersize=10)


def write_figure5(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "revisiting_figure5")
    report = build_report(runs.records, baseline="full", alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    pct = trainable_pct(runs.records)
    families = [f for f in FAMILIES if any(m.startswith(f"{f}_") for m in report.methods)]
    if not families:
        from pet_lightning.sweeps.files import SweepError

        raise SweepError("no <family>_<size> methods (adapter_small, lora_large, ...) in these results")
    plt = pyplot()
    fig, axes = plt.subplots(len(report.tasks), len(families), figsize=(4.2 * len(families),
                                                                           3.2 * len(report.tasks)), squeeze=False)
    rows, csv_rows, findings = [], [], []
    for i, task in enumerate(report.tasks):
        for j, family in enumerate(families):
            axis = axes[i][j]
            for k, size in enumerate(SIZES):
                cell = report.cell(task, f"{family}_{size}")
                if cell is None:
                    continue
                label = f"{size} ({pct.get(f'{family}_{size}', math.nan):.3g}% params)"
                _density(axis, cell.values, label, f"C{k}")
                rows.append([task, family, size, fmt(pct.get(f"{family}_{size}"), 4), fmt(mean_of(cell.values)),
                             fmt(std_of(cell.values), 2)])
                csv_rows.append({"task": task, "family": family, "size": size,
                                 "param_pct": pct.get(f"{family}_{size}"), "mean": mean_of(cell.values),
                                 "std": std_of(cell.values), "n": len(cell.values)})
            axis.set_title(f"{task}: {family}")
            axis.set_xlabel("score x 100")
            axis.legend(fontsize=7)
    figure = _save(plt, fig, out / "figure5.png")
    text, paths = write_table(out, "figure5", ["task", "family", "size", "%Param", "mean", "std"], rows, csv_rows)
    paths["figure5_png"] = figure
    for family in families:
        claim, verdict, evidence = fewer_parameters_finding(
            report, pct, [f"{family}_{size}" for size in SIZES])
        findings.append((f"{family}: {claim}", verdict, evidence))
    paths["report"] = _page(out, "Revisiting study, Figure 5: stability against parameter count", runs, [
        "![figure 5](figure5.png)\n", text, collapse_note(report), findings_section(findings)])
    return paths


def write_iterations(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "revisiting_iterations")
    report = build_report(runs.records, baseline="full", alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    conditions: dict[tuple[str, str], dict[str, Any]] = {}
    for method in report.methods:
        match = CONDITION.match(method)
        if match:
            for task in report.tasks:
                if (cell := report.cell(task, method)) is not None:
                    conditions.setdefault((task, match["method"]), {})[match["condition"]] = cell
    rows, csv_rows, findings = [], [], []
    for (task, method), cells in conditions.items():
        for condition in ("1k", "2k", "1k_long"):
            if condition in cells:
                cell = cells[condition]
                rows.append([task, method, condition, fmt(mean_of(cell.steps), 0), fmt(mean_of(cell.values)),
                             fmt(std_of(cell.values), 2), str(len(cell.values))])
                csv_rows.append({"task": task, "method": method, "condition": condition,
                                 "steps": mean_of(cell.steps), "mean": mean_of(cell.values),
                                 "std": std_of(cell.values), "n": len(cell.values)})
        claim = f"{task} / {method}: std falls with more iterations at equal data (1k_long below 1k)"
        if not {"1k", "1k_long"} <= set(cells) or min(len(cells["1k"].values), len(cells["1k_long"].values)) < 3:
            findings.append((claim, UNTESTABLE, "needs 3+ seeds of the 1k and 1k_long conditions"))
            continue
        short, long = cells["1k"].values, cells["1k_long"].values
        p = float(stats.levene(short, long).pvalue)  # equal variances? (two-sided; the direction comes from the stds)
        lower = std_of(long) < std_of(short)
        verdict = REPRODUCES if lower and p < alpha else INCONCLUSIVE if lower else DIFFERS
        evidence = f"std 1k {fmt(std_of(short), 2)}, 1k_long {fmt(std_of(long), 2)}"
        if "2k" in cells:
            evidence += f", 2k {fmt(std_of(cells['2k'].values), 2)}"
        findings.append((claim, verdict, evidence + f"; Levene p = {fmt_p(p)}"))
    text, paths = write_table(out, "iterations", ["task", "method", "condition", "steps", "mean", "std", "seeds"],
                              rows, csv_rows)
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(max(4.0, 1.6 * len(conditions) + 2), 3.4))
    labels = [f"{r['task']}/{r['method']}\n{r['condition']}" for r in csv_rows]
    axis.bar(range(len(labels)), [r["std"] for r in csv_rows],
             color=[{"1k": "C0", "2k": "C1", "1k_long": "C2"}[r["condition"]] for r in csv_rows])
    axis.set_xticks(range(len(labels)), labels, fontsize=7)
    axis.set_ylabel("std over seeds (score x 100)")
    axis.set_title("Spread over seeds: 1k examples, 2k examples,\nand 1k examples for as many steps as 2k")
    paths["iterations_png"] = _save(plt, fig, out / "iterations.png")
    paths["report"] = _page(out, "Revisiting study: instability follows training iterations", runs, [
        "![iterations](iterations.png)\n", text, collapse_note(report), findings_section(findings)])
    return paths
