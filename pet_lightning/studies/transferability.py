"""Report layouts of the transferability study (AkbarTajari et al., EMNLP 2022): Tables 1 and 3.

Table 1: rows = the modules that train, columns = %Param, each task (ours mean ± std, the paper's figure, the
difference) and Avg. Table 3: the LayerNorms of one layer at a time (layers numbered from 1, next to the
embeddings), one row per task, Full-FT last. Each report ends with findings that test the paper's claims on our
numbers: Kendall's tau of the row order, Frozen / Random below LayerNorms / BitFit (one-tailed Welch), and the
best layer band of Table 3.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from pet_lightning.reports.cells import build_report
from pet_lightning.reports.stats import kendall_tau, mean_of, welch_t_test
from pet_lightning.studies.common import (
    DIFFERS,
    INCONCLUSIVE,
    REPRODUCES,
    UNTESTABLE,
    cell_mean,
    cell_text,
    collapse_note,
    difference,
    findings_section,
    fmt,
    fmt_p,
    published_cells,
    study_runs,
    task_header,
    trainable_pct,
    write_table,
)
from pet_lightning.studies.published import load_published

TABLE1_ROWS = {
    "full_ft": "Full-FT", "feed_forward": "Feed-Forward", "multi_head": "Multi-Head", "layernorms": "LayerNorms",
    "layernorms_a": "LayerNorms_A", "layernorms_f": "LayerNorms_F", "bitfit": "BitFit", "random": "Random",
    "frozen": "Frozen",
}
WEAK_ROWS, STRONG_ROWS = ("frozen", "random"), ("layernorms", "bitfit")
LAYER_METHOD = re.compile(r"^layer_(\d+)$")


def _order_finding(report, published, tasks: list[str]) -> list[tuple[str, str, str]]:
    """Kendall's tau of our row order against the paper's, per task and on the average (common rows only)."""
    findings = []
    scopes = [(task, [task]) for task in tasks] + ([("avg", tasks)] if len(tasks) > 1 else [])
    for label, scope in scopes:
        ours, theirs, rows = [], [], []
        for method in report.methods:
            paper = _published_mean(published, method, scope)
            mine = mean_of([cell_mean(report.cell(task, method)) for task in scope])
            if paper is not None and not math.isnan(mine):
                ours.append(mine)
                theirs.append(paper)
                rows.append(method)
        claim = f"row order ({label}) matches the paper's (Kendall's tau > 0)"
        if len(rows) < 3:
            findings.append((claim, UNTESTABLE, f"{len(rows)} row(s) have a published {label} figure; tau needs 3+"))
            continue
        tau, p = kendall_tau(ours, theirs)
        verdict = REPRODUCES if tau > 0 and p < report.alpha else INCONCLUSIVE if tau > 0 else DIFFERS
        findings.append((claim, verdict, f"tau = {fmt(tau, 2)} (p = {fmt_p(p)}) over {', '.join(rows)}"))
    return findings


def _published_mean(published, method: str, tasks: list[str]) -> float | None:
    if published is None:
        return None
    values = [published.get(method, task) for task in tasks]
    return None if any(v is None for v in values) else mean_of(values)


def _weak_below_strong(report, tasks: list[str]) -> tuple[str, str, str]:
    """Frozen and Random below LayerNorms and BitFit on every task: reproduces when every one-tailed Welch test has
    p < alpha; same direction when every mean is below but some test is not significant; else does not."""
    tests, weak_tests, reversed_means = [], [], []
    for task in tasks:
        for weak in WEAK_ROWS:
            for strong in STRONG_ROWS:
                low, high = report.cell(task, weak), report.cell(task, strong)
                if low is None or high is None or len(low.values) < 2 or len(high.values) < 2:
                    continue
                p = welch_t_test(high.values, low.values, "greater")[2]
                if math.isnan(p):  # no spread on either side: the means decide
                    p = 0.0 if mean_of(high.values) > mean_of(low.values) else 1.0
                tests.append(f"{task}: {TABLE1_ROWS[strong]} > {TABLE1_ROWS[weak]} p = {fmt_p(p)}")
                if not p < report.alpha:
                    weak_tests.append(tests[-1])
                if not mean_of(high.values) > mean_of(low.values):
                    reversed_means.append(tests[-1])
    claim = "Frozen and Random fall below LayerNorms and BitFit"
    if not tests:
        return claim, UNTESTABLE, "needs 2+ seeds of Frozen, Random, LayerNorms and BitFit"
    verdict = REPRODUCES if not weak_tests else DIFFERS if reversed_means else INCONCLUSIVE
    evidence = "; ".join(tests)
    if weak_tests:
        evidence += f" ({len(tests) - len(weak_tests)} of {len(tests)} significant"
        evidence += f"; means reversed: {len(reversed_means)})" if reversed_means else "; every mean in order)"
    return claim, verdict, evidence


def write_table1(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "transferability_table1")
    report = build_report(runs.records, baseline="full_ft", alpha=alpha)
    published = load_published("transferability_table1")
    methods = [m for m in TABLE1_ROWS if m in report.methods] + [m for m in report.methods if m not in TABLE1_ROWS]
    report.methods = methods
    tasks, pct = report.tasks, trainable_pct(runs.records)
    header = ["Method", "%Param"]
    header += task_header(report, tasks)
    header += ["Avg", "paper Avg", "Δ"]
    rows, csv_rows = [], []
    for method in methods:
        row = [TABLE1_ROWS.get(method, method), fmt(pct.get(method), 4)]
        csv_row: dict[str, Any] = {"method": method, "param_pct": pct.get(method)}
        for task in tasks:
            cells, mean, paper = published_cells(report, method, task, published)
            row += cells
            cell = report.cell(task, method)
            csv_row.update({f"{task}_mean": mean, f"{task}_n": len(cell.values) if cell else 0,
                            f"{task}_paper": paper})
        average = mean_of([cell_mean(report.cell(task, method)) for task in tasks])
        paper_avg = _published_mean(published, method, tasks)
        row += [fmt(average), fmt(paper_avg), difference(average, paper_avg)]
        csv_row.update({"avg": average, "avg_paper": paper_avg})
        rows.append(row)
        csv_rows.append(csv_row)
    out.mkdir(parents=True, exist_ok=True)
    table, paths = write_table(out, "table1", header, rows, csv_rows)
    findings = _order_finding(report, published, tasks) + [_weak_below_strong(report, tasks)]
    source = published.citation if published else "no published table stored"
    page = [
        "# Transferability study, Table 1: which modules carry the task\n",
        runs.header + "\n",
        f"Published figures (`paper` columns; – where the stored table has no figure): {source}\n",
        "## Table 1: mean ± std over seeds\n", table, collapse_note(report), findings_section(findings),
    ]
    (out / "report.md").write_text("\n".join(page), encoding="utf-8")
    paths["report"] = out / "report.md"
    return paths


def _layer_methods(methods: list[str]) -> list[tuple[int, str]]:
    found = [(int(m.group(1)), name) for name in methods if (m := LAYER_METHOD.match(name))]
    return sorted(found)


def band_of(layer: int, layers: int) -> str:
    """``lower`` / ``middle`` / ``upper`` third of ``layers`` layers numbered from 1 (6 layers: 1-2, 3-4, 5-6)."""
    third = layers / 3
    return "lower" if layer <= third else "middle" if layer <= 2 * third else "upper"


def write_table3(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "transferability_table3")
    report = build_report(runs.records, baseline="full_ft", alpha=alpha)
    published = load_published("transferability_table3")
    layers = _layer_methods(report.methods)
    if not layers:
        from pet_lightning.sweeps.files import SweepError

        raise SweepError("no layer_<k> runs in these results: Table 3 tunes the LayerNorms of one layer per row")
    count = max(index for index, _ in layers)
    header = ["Task", *[f"L{index}" for index, _ in layers], "Full-FT", "best layer (band)"]
    rows, csv_rows, best_layer = [], [], {}
    for task in report.tasks:
        means = {index: cell_mean(report.cell(task, name)) for index, name in layers}
        best = best_layer[task] = max(means, key=lambda i: -math.inf if math.isnan(means[i]) else means[i])
        row = [f"{task} ({report.headline[task]})"]
        for _index, name in layers:
            paper = published.get(name, task) if published else None
            row.append(cell_text(report.cell(task, name)) + (f" (paper {fmt(paper)})" if paper is not None else ""))
        row += [cell_text(report.cell(task, "full_ft")), f"L{best} ({band_of(best, count)})"]
        rows.append(row)
        csv_rows.append({"task": task, **{f"layer_{i}": means[i] for i in means},
                         "full_ft": cell_mean(report.cell(task, "full_ft")), "best_layer": best})
    out.mkdir(parents=True, exist_ok=True)
    table, paths = write_table(out, "table3", header, rows, csv_rows)
    middle = [task for task, best in best_layer.items() if band_of(best, count) == "middle"]
    verdict = REPRODUCES if len(middle) > len(best_layer) / 2 else DIFFERS
    evidence = "; ".join(f"{task}: best L{best} ({band_of(best, count)})" for task, best in best_layer.items())
    findings = [("the LayerNorms of the middle layers transfer best (best single layer in the middle third)",
                 verdict, evidence)]
    page = [
        "# Transferability study, Table 3: the LayerNorms of one layer\n",
        runs.header + "\n",
        f"Layers are numbered 1..{count} from the embeddings up (L1 = 0-based index 0); bands: lower / middle / "
        f"upper third of the {count} layers. Published figures: "
        f"{published.citation if published else 'no published Table 3 stored (see studies/published/README.md)'}.\n",
        "## Table 3: mean ± std over seeds\n", table, collapse_note(report), findings_section(findings),
    ]
    (out / "report.md").write_text("\n".join(page), encoding="utf-8")
    paths["report"] = out / "report.md"
    return paths

