"""Report layout of the EH-FT study (Yang et al., 2022), Table 1, with the backbone's distance from the
pretrained weights as a column.

Findings tested on our numbers, paired by seed (each seed's average over the tasks): every EH-FT variant against
Finetuning and LP-FT (one-tailed paired t-test, ``scipy.stats.ttest_rel``), and whether EH-FT ends nearer the
pretrained point than Finetuning (the study's explanation of why it helps).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from pet_lightning.reports.cells import build_report
from pet_lightning.reports.stats import mean_of, paired_t_test, std_of
from pet_lightning.studies.common import (
    DIFFERS,
    INCONCLUSIVE,
    REPRODUCES,
    UNTESTABLE,
    cell_mean,
    collapse_note,
    findings_section,
    fmt,
    fmt_p,
    published_cells,
    seed_average,
    study_runs,
    task_header,
    trainable_pct,
    write_table,
)
from pet_lightning.studies.published import load_published

TABLE1_ROWS = {
    "finetuning": "Finetuning", "linear_probing": "Linear Probing", "prefix_tuning": "Prefix-Tuning",
    "lora": "LoRA", "bitfit": "BitFit", "top_k": "Top-K", "mixout": "Mixout", "child_tuning_d": "Child-Tuning_D",
    "lp_ft": "LP-FT", "eh_ft_lora": "EH-FT_LoRA", "eh_ft_pt": "EH-FT_PT", "eh_ft_bitfit": "EH-FT_BitFit",
}
EH_FT_ROWS = ("eh_ft_lora", "eh_ft_pt", "eh_ft_bitfit")
BASELINES = ("finetuning", "lp_ft")


def distances(records: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """Per method, per seed: the selected model's total L2 distance from the pretrained backbone, averaged over
    the tasks of that seed."""
    found: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        distance = (record.get("distance") or {}).get("total")
        if distance is not None:
            found[record["method"]][int(record["seed"])].append(float(distance))
    return {method: {seed: mean_of(v) for seed, v in seeds.items()} for method, seeds in found.items()}


def layer_distances(records: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """Per method, per encoder layer (0 = next to the embeddings): the mean L2 distance over its runs."""
    found: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        for layer, value in ((record.get("distance") or {}).get("layers") or {}).items():
            found[record["method"]][int(layer)].append(float(value))
    return {method: {layer: mean_of(v) for layer, v in sorted(layers.items())} for method, layers in found.items()}


def _layer_table(out: Path, methods: list[str], records: list[dict[str, Any]]) -> tuple[str, dict[str, Path]]:
    per_layer = layer_distances(records)
    layers = sorted({layer for values in per_layer.values() for layer in values})
    header = ["Method", *[f"layer {layer}" for layer in layers]]
    rows = [[TABLE1_ROWS.get(m, m), *[fmt(per_layer[m].get(layer), 3) for layer in layers]]
            for m in methods if m in per_layer]
    csv_rows = [{"method": m, **{f"layer_{layer}": per_layer[m].get(layer) for layer in layers}}
                for m in methods if m in per_layer]
    return write_table(out, "distance_per_layer", header, rows, csv_rows)


def _paired(a: dict[int, float], b: dict[int, float], alternative: str) -> tuple[list[int], float, float]:
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return seeds, float("nan"), float("nan")
    t, p = paired_t_test([a[s] for s in seeds], [b[s] for s in seeds], alternative)
    return seeds, t, p


def _findings(report, tasks: list[str], dist: dict[str, dict[int, float]]) -> list[tuple[str, str, str]]:
    findings = []
    for variant in EH_FT_ROWS:
        ours = seed_average(report, variant, tasks)
        for baseline in BASELINES:
            claim = f"{TABLE1_ROWS[variant]} beats {TABLE1_ROWS[baseline]} on average (paired by seed)"
            theirs = seed_average(report, baseline, tasks)
            seeds, t, p = _paired(ours, theirs, "greater")
            if len(seeds) < 2:
                findings.append((claim, UNTESTABLE, f"{len(seeds)} common seed(s); a paired test needs 2+"))
                continue
            gain = mean_of([ours[s] - theirs[s] for s in seeds])
            verdict = REPRODUCES if p < report.alpha else INCONCLUSIVE if gain > 0 else DIFFERS
            findings.append((claim, verdict, f"mean gain {gain:+.2f} over seeds {', '.join(map(str, seeds))}; "
                                             f"t = {fmt(t, 2)}, one-tailed p = {fmt_p(p)}"))
        # Against Finetuning the stage-2 schedule is shorter (stage 1 takes its share of the epochs); LP-FT has the
        # same stage 2, so it is the control that separates the head's effect from the schedule's.
        for baseline in BASELINES:
            claim = (f"{TABLE1_ROWS[variant]} ends nearer the pretrained weights than {TABLE1_ROWS[baseline]} "
                     "(L2 distance)")
            seeds, t, p = _paired(dist.get(variant, {}), dist.get(baseline, {}), "less")
            if len(seeds) < 2:
                findings.append((claim, UNTESTABLE, "needs the distance of 2+ common seeds"))
                continue
            ratio = mean_of([dist[variant][s] for s in seeds]) / mean_of([dist[baseline][s] for s in seeds])
            verdict = REPRODUCES if p < report.alpha else INCONCLUSIVE if ratio < 1 else DIFFERS
            findings.append((claim, verdict, f"distance ratio {ratio:.3f}; t = {fmt(t, 2)}, one-tailed p = "
                                             f"{fmt_p(p)}"))
    return findings


def write_table1(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "eh_ft_table1")
    report = build_report(runs.records, baseline="finetuning", alpha=alpha)
    published = load_published("eh_ft_table1")
    methods = [m for m in TABLE1_ROWS if m in report.methods] + [m for m in report.methods if m not in TABLE1_ROWS]
    tasks, pct, dist = report.tasks, trainable_pct(runs.records), distances(runs.records)
    header = ["Method", "%Param"]
    header += task_header(report, tasks)
    header += ["Avg", "L2 distance"]
    rows, csv_rows = [], []
    for method in methods:
        row = [TABLE1_ROWS.get(method, method), fmt(pct.get(method), 4)]
        csv_row: dict[str, Any] = {"method": method, "param_pct": pct.get(method)}
        for task in tasks:
            cells, mean, paper = published_cells(report, method, task, published)
            row += cells
            csv_row.update({f"{task}_mean": mean, f"{task}_paper": paper})
        average = mean_of([cell_mean(report.cell(task, method)) for task in tasks])
        per_seed = list(dist.get(method, {}).values())
        row += [fmt(average), f"{fmt(mean_of(per_seed), 2)} ± {fmt(std_of(per_seed), 2)}"]
        csv_row.update({"avg": average, "distance": mean_of(per_seed)})
        rows.append(row)
        csv_rows.append(csv_row)
    out.mkdir(parents=True, exist_ok=True)
    table, paths = write_table(out, "table1", header, rows, csv_rows)
    layer_text, layer_paths = _layer_table(out, methods, runs.records)
    paths.update(layer_paths)
    source = published.citation if published else ("no published EH-FT Table 1 stored (RoBERTa-large; see "
                                                   "pet_lightning/studies/published/README.md)")
    page = [
        "# EH-FT study, Table 1: fine-tuning from a PET-trained head\n",
        runs.header + "\n",
        "Every row uses the study's 2-layer MLP head. Two-stage rows (LP-FT, EH-FT_*) are selected among stage-2 "
        "epochs only: the reported model is the fine-tuned one. L2 distance: the selected model's backbone vs the "
        "pretrained backbone (PET updates merged), mean ± std over seeds of the per-seed average over tasks.\n",
        f"Published figures: {source}.\n",
        "## Table 1: mean ± std over seeds\n", table, collapse_note(report),
        "## L2 distance from the pretrained backbone per encoder layer (mean over runs; layer 0 next to the "
        "embeddings)\n", layer_text, findings_section(_findings(report, tasks, dist)),
    ]
    (out / "report.md").write_text("\n".join(page), encoding="utf-8")
    paths["report"] = out / "report.md"
    return paths
