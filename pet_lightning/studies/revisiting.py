"""Report layouts of the "Revisiting Parameter-Efficient Tuning" study (Chen et al., EMNLP 2022).

Table 2 (mean ± std, one-tailed Welch tests against full fine-tuning) and Table 3 (arrows per resource group) come
from the same runs (study file ``revisiting_table2``); Table 4 (std by source of randomness) from
``revisiting_table4``; Figures 3, 4, 5 and the iterations finding from their own study files. Methods are named
``full``, ``adapter``, ``prefix``, ``lora``, ``bitfit`` as in ``configs/revisiting/``. Findings test the paper's
claims on our numbers and say which reproduce.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pet_lightning.reports.cells import GROUP_LABELS, build_report
from pet_lightning.reports.figures import plot_seed_distributions
from pet_lightning.reports.stats import kendall_tau, mean_of, paired_t_test, std_of
from pet_lightning.reports.tables import BETTER, table2, table3, table4
from pet_lightning.studies.common import (
    DIFFERS,
    INCONCLUSIVE,
    REPRODUCES,
    UNTESTABLE,
    cell_mean,
    collapse_note,
    difference,
    findings_section,
    fmt,
    fmt_p,
    seed_average,
    study_runs,
    trainable_pct,
    write_table,
)
from pet_lightning.studies.published import load_published

PET_METHODS = ("adapter", "prefix", "lora", "bitfit")
FIGURE4_TASKS = ("cb", "copa", "wsc", "rte")


def _page(out: Path, title: str, runs, sections: list[str]) -> Path:
    (out / "report.md").write_text("\n".join([f"# {title}\n", runs.header + "\n", *sections]), encoding="utf-8")
    return out / "report.md"


def _published_table(report, name: str) -> str:
    """Ours beside the published figure and the difference, for every cell the stored table has."""
    published = load_published(name)
    if published is None:
        return (f"Published figures: none stored for {name} (pet_lightning/studies/published/README.md says how "
                "to add them); the findings below test the paper's claims on our numbers alone.\n")
    rows = []
    for task in report.tasks:
        for method in report.methods:
            paper = published.get(method, task)
            if paper is not None:
                ours = cell_mean(report.cell(task, method))
                rows.append(f"| {task} | {method} | {fmt(ours)} | {fmt(paper)} | {difference(ours, paper)} |")
    head = "| task | method | ours | paper | Δ |\n|---|---|---|---|---|\n"
    return f"Published figures: {published.citation}\n\n" + head + "\n".join(rows) + "\n"


def _group_findings(report, arrows: dict[tuple[str, str], str]) -> list[tuple[str, str, str]]:
    findings = []
    claims = (
        ("high", "PET methods are not better than full fine-tuning on high-resource tasks", False,
         "no high-resource (>= 10k training examples) task with 2+ seeds"),
        ("low", "PET methods may beat full fine-tuning on low-resource tasks (some method ↗ in the low group)", True,
         "no low-resource (< 1k training examples) task with 2+ seeds"),
    )
    for group, claim, wants_better, missing in claims:
        marks = {m: arrows[(m, group)] for m in PET_METHODS if (m, group) in arrows}
        if not marks:
            findings.append((claim, UNTESTABLE, missing))
            continue
        better = any(arrow == BETTER for arrow in marks.values())
        findings.append((claim, REPRODUCES if better == wants_better else DIFFERS,
                         "; ".join(f"{m}: {arrow}" for m, arrow in marks.items())))
    published = load_published("revisiting_table3")
    claim = "our Table 3 arrows agree with the paper's"
    if published is None:
        findings.append((claim, UNTESTABLE, "the paper's Table 3 is not stored"))
    else:
        words = {"up": BETTER, "same": "→", "down": "↘"}
        pairs = [(key, arrow, words.get(str(published.get(*key)))) for key, arrow in arrows.items()
                 if published.get(*key) is not None]
        agree = [key for key, arrow, theirs in pairs if arrow == theirs]
        verdict = UNTESTABLE if not pairs else REPRODUCES if len(agree) == len(pairs) else DIFFERS
        findings.append((claim, verdict, f"{len(agree)} of {len(pairs)} arrows agree"))
    return findings


def _prefix_lags(report) -> tuple[str, str, str]:
    claim = "prefix (prompt) tuning lags full fine-tuning (per-seed average over tasks, paired)"
    ours, full = seed_average(report, "prefix", report.tasks), seed_average(report, "full", report.tasks)
    seeds = sorted(set(ours) & set(full))
    if len(seeds) < 2:
        return claim, UNTESTABLE, "needs prefix and full runs of 2+ common seeds on every task"
    t, p = paired_t_test([ours[s] for s in seeds], [full[s] for s in seeds], "less")
    gap = mean_of([ours[s] - full[s] for s in seeds])
    verdict = REPRODUCES if p < report.alpha else INCONCLUSIVE if gap < 0 else DIFFERS
    return claim, verdict, f"prefix - full = {gap:+.2f} over seeds {', '.join(map(str, seeds))}; p = {fmt_p(p)}"


def fewer_parameters_finding(report, pct: dict[str, float], methods: list[str]) -> tuple[str, str, str]:
    """Kendall's tau between % trainable parameters and the std over seeds (mean over tasks) of ``methods``."""
    claim = "fewer trainable parameters -> lower std over seeds"
    pairs = []
    for method in methods:
        stds = [std_of(report.cell(t, method).values) for t in report.tasks if report.cell(t, method)]
        stds = [s for s in stds if not math.isnan(s)]
        if stds and method in pct:
            pairs.append((method, pct[method], mean_of(stds)))
    if len(pairs) < 3:
        return claim, UNTESTABLE, f"{len(pairs)} method(s) with a std and a parameter count; tau needs 3+"
    tau, p = kendall_tau([x for _, x, _ in pairs], [y for _, _, y in pairs])
    verdict = REPRODUCES if tau > 0 and p < report.alpha else INCONCLUSIVE if tau > 0 else DIFFERS
    listed = ", ".join(f"{m} {x:.3g}% std {y:.2f}" for m, x, y in pairs)
    return claim, verdict, f"tau = {fmt(tau, 2)} (p = {fmt_p(p)}): {listed}"


def write_table2(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "revisiting_table2")
    report = build_report(runs.records, baseline="full", alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    header, rows, csv_rows = table2(report)
    text2, paths = write_table(out, "table2", header, rows, csv_rows)
    header, rows, csv_rows = table3(report)
    text3, more = write_table(out, "table3", header, rows, csv_rows)
    paths.update(more)
    arrows = {(row["method"], row["group"]): row["trend"] for row in csv_rows}
    findings = [*_group_findings(report, arrows), _prefix_lags(report),
                fewer_parameters_finding(report, trainable_pct(runs.records), report.methods)]
    groups = ", ".join(f"{t}: {GROUP_LABELS[report.groups[t]]}" for t in report.tasks)
    paths["report"] = _page(out, "Revisiting study, Tables 2 and 3: PET methods against full fine-tuning", runs, [
        f"Resource groups by the examples the runs trained on: {groups}.\n",
        "## Table 2: mean ± std over seeds (↑/↓: one-tailed Welch test against `full`)\n", text2,
        "## Table 3: better / no difference / worse than `full`, per resource group\n", text3,
        _published_table(report, "revisiting_table2"), collapse_note(report), findings_section(findings)])
    return paths


def write_table4(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "revisiting_table4")
    report = build_report(runs.records, baseline="full", alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    header, rows, csv_rows = table4(report)
    text, paths = write_table(out, "table4", header, rows, csv_rows)
    findings = []
    for method in report.methods:
        stds = {row["seed_mode"]: row["std"] for row in csv_rows if row["method"] == method}
        claim = f"{method}: weight initialisation and data order each cause spread (std > 0 when only one varies)"
        if not {"init", "order"} <= set(stds):
            findings.append((claim, UNTESTABLE, "needs runs with only the init seed and only the order seed varied"))
            continue
        both = all(stds[m] > 0 for m in ("init", "order"))
        findings.append((claim, REPRODUCES if both else DIFFERS,
                         ", ".join(f"std {mode} {fmt(value, 2)}" for mode, value in stds.items())))
    paths["report"] = _page(out, "Revisiting study, Table 4: where the spread comes from", runs, [
        "## Table 4: std over seeds when both seeds vary (global), only the weight-init seed, or only the "
        "data-order seed\n", text, _published_table(report, "revisiting_table4"), findings_section(findings)])
    return paths


def write_figure4(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "revisiting_figure4")
    report = build_report(runs.records, baseline="full", alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    report.tasks = [t for t in FIGURE4_TASKS if t in report.tasks] + [t for t in report.tasks
                                                                       if t not in FIGURE4_TASKS]
    paths = {"figure4": plot_seed_distributions(report, out / "figure4.png")}
    rows = [[task, method, fmt(mean_of(c.values)), fmt(std_of(c.values)), fmt(min(c.values)), fmt(max(c.values))]
            for task in report.tasks for method in report.methods if (c := report.cell(task, method))]
    text, more = write_table(out, "figure4", ["task", "method", "mean", "std", "min", "max"], rows,
                             [dict(zip(("task", "method", "mean", "std", "min", "max"), r)) for r in rows])
    paths.update({"figure4_table": more["figure4"], "figure4_csv": more["figure4_csv"]})
    paths["report"] = _page(out, "Revisiting study, Figure 4: every seed's score", runs, [
        "![seed distributions](figure4.png)\n", text, collapse_note(report)])
    return paths
