"""Report layout of the EH-FT study (Yang et al., 2022), Table 1, with the backbone's distance from the
pretrained weights as a column.

Every cell shows ours (mean ± std over seeds), the paper's figure and the difference, on the paper's metric
(:data:`TABLE1_NAMES`); the average beside the paper's re-averaged over our tasks ("paper, same tasks"). The
findings (:mod:`pet_lightning.studies.eh_ft_findings`) test every EH-FT variant against Finetuning and LP-FT, per
task and on average, and whether EH-FT ends nearer the pretrained weights, in the four words of
:mod:`pet_lightning.reports.verdicts`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from pet_lightning.reports.cells import Report, build_report
from pet_lightning.reports.stats import mean_of, std_of
from pet_lightning.reports.tables import markdown_table
from pet_lightning.reports.verdicts import FINDINGS_HEADER, finding_row
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
from pet_lightning.studies.eh_ft_findings import (
    PAPER_AVERAGE,
    distance_findings,
    gain_findings,
    label,
)
from pet_lightning.studies.published import PaperNames, StudyTable, load_study_table
from pet_lightning.studies.registry import layout

NOT_IN_PAPER = "(not in the paper)"
TABLE1_NAMES = PaperNames(
    # Finetuning is compared with the paper's reproduced row, as the paper recommends: its first row is quoted
    # from the RoBERTa paper, partly started from an MNLI model.
    rows={
        "finetuning": "Finetuning (reproduce)", "linear_probing": "Linear Probing", "prefix_tuning": "Prefix-Tuning",
        "lora": "LoRA", "bitfit": "BitFit", "top_k": "Top-K Tuning", "mixout": "Mixout",
        "child_tuning_d": "Child-Tuning _D", "lp_ft": "LP-FT", "eh_ft_lora": "EH-FT _{LoRA}",
        "eh_ft_pt": "EH-FT _{PT}", "eh_ft_bitfit": "EH-FT _{BitFit}",
    },
    # MRPC and CB in accuracy: the study's code logs accuracy for them and its Finetuning row quotes Liu et al.'s
    # accuracies (SAT/model/finetune/utils.py:764-778, 910-913; ../shared/notes/reviews/fidelity.md E2).
    metrics={"cb": "accuracy", "mrpc": "accuracy", "sts-b": "pearson", "cola": "mcc"},
    metric_note=("Metrics: CB accuracy (`accuracy`: the paper's CB figures are multiples of 1/224, 4 seeds x 56 "
                 "examples, not our accuracy/F1 average headline), MRPC accuracy (`accuracy`: what the study's code "
                 "logs, and its Finetuning row quotes RoBERTa's accuracy), STS-B Pearson, CoLA Matthews "
                 "correlation, accuracy otherwise."),
)
def distances(records: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """Per method, per seed: the selected model's total L2 distance from the pretrained backbone, averaged over
    the tasks of that seed."""
    found: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (method, _task, seed), distance in unit_distances(records).items():
        found[method][seed].append(distance)
    return {method: {seed: mean_of(v) for seed, v in sorted(seeds.items())} for method, seeds in found.items()}


def unit_distances(records: list[dict[str, Any]]) -> dict[tuple[str, str, int], float]:
    """(method, task, seed) -> the selected model's total L2 distance from the pretrained backbone."""
    found = {}
    for record in records:
        distance = (record.get("distance") or {}).get("total")
        if distance is not None:
            found[(record["method"], record["task"], int(record["seed"]))] = float(distance)
    return found


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
    rows = [[label(m), *[fmt(per_layer[m].get(layer), 3) for layer in layers]] for m in methods if m in per_layer]
    csv_rows = [{"method": m, **{f"layer_{layer}": per_layer[m].get(layer) for layer in layers}}
                for m in methods if m in per_layer]
    return write_table(out, "distance_per_layer", header, rows, csv_rows)


def paper_average(published: StudyTable | None, method: str, tasks: list[str]) -> float | None:
    """The paper's row re-averaged over our tasks ("paper, same tasks"); None unless it has a figure for each."""
    if published is None or not tasks:
        return None
    figures = [published.get(method, task) for task in tasks]
    return None if any(f is None for f in figures) else mean_of(figures)


def _paper_text(value: float | None) -> str:
    return NOT_IN_PAPER if value is None else fmt(value, 2)


def _difference(ours: float, paper: float | None) -> str:
    return "–" if paper is None or math.isnan(ours) else f"{ours - paper:+.2f}"


def paper_tasks(report: Report, published: StudyTable | None) -> list[str]:
    """Our tasks that the paper has a column for."""
    if published is None:
        return []
    return [task for task in report.tasks if any(published.get(m, task) is not None for m in TABLE1_NAMES.rows)]


def table1_rows(report: Report, methods: list[str], published: StudyTable | None, pct: dict[str, float],
                dist: dict[str, dict[int, float]]) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """Each task as ours / paper / Δ; our average over all our tasks, and where the paper lacks some of them, ours
    again over the tasks it has, beside the paper re-averaged over those ("paper, same tasks")."""
    tasks, common = report.tasks, paper_tasks(report, published)
    header = ["Method", "%Param"]
    for task in tasks:
        header += [f"{task} ({report.headline[task]})", "paper", "Δ"]
    header += [f"Avg, our {len(tasks)} tasks"]
    if common and common != tasks:
        header += [f"Avg, the {len(common)} in the paper ({', '.join(common)})"]
    if common:
        header += ["paper, same tasks", "Δ"]
    header += ["L2 distance"]
    rows, csv_rows = [], []
    for method in methods:
        row = [label(method), fmt(pct.get(method), 4)]
        csv_row: dict[str, Any] = {"method": method, "param_pct": pct.get(method)}
        for task in tasks:
            mean = cell_mean(report.cell(task, method))
            paper = published.get(method, task) if published else None
            row += [cell_text(report.cell(task, method)), _paper_text(paper), _difference(mean, paper)]
            csv_row.update({f"{task}_mean": mean, f"{task}_paper": paper})
        average = mean_of([cell_mean(report.cell(task, method)) for task in tasks])
        row += [fmt(average, 2)]
        csv_row["avg"] = average
        if common:
            ours = mean_of([cell_mean(report.cell(task, method)) for task in common])
            paper = paper_average(published, method, common)
            row += ([fmt(ours, 2)] if common != tasks else []) + [_paper_text(paper), _difference(ours, paper)]
            csv_row.update({"avg_paper_tasks": ours, "avg_paper_same_tasks": paper})
        per_seed = list(dist.get(method, {}).values())
        row += [f"{fmt(mean_of(per_seed), 2)} ± {fmt(std_of(per_seed), 2)}"]
        csv_row["distance"] = mean_of(per_seed)
        rows.append(row)
        csv_rows.append(csv_row)
    return header, rows, csv_rows


def _scope_note(report: Report, published: StudyTable | None) -> str:
    if published is None:
        return "Published figures: no EH-FT Table 1 stored.\n"
    lacking = [task for task in report.tasks if task not in paper_tasks(report, published)]
    ours = set(report.tasks)
    theirs = sorted({task for _row, task, _s in published.table.figures if task != PAPER_AVERAGE} - ours)
    text = f"Published figures: {published.citation}\n"
    if lacking:
        text += (f"\nThe paper has no column for {', '.join(lacking)}: its cells say {NOT_IN_PAPER}, and the "
                 "\"paper, same tasks\" average is beside ours over the tasks it has. ")
    if theirs:
        text += (f"The paper's tasks we did not run: {', '.join(theirs)}; its printed Avg (over its 9 tasks) is "
                 "never compared with ours, only its figures re-averaged over our tasks.\n")
    return text


@layout("eh_ft_table1")
def write_table1(runs: StudyRuns, out: Path, alpha: float) -> dict[str, Path]:
    present = {record["task"] for record in runs.records}
    metrics = {task: metric for task, metric in TABLE1_NAMES.metrics.items() if task in present}
    report = build_report(runs.records, baseline="finetuning", alpha=alpha, metrics=metrics)
    published = load_study_table("eh_ft_table1", TABLE1_NAMES)
    methods = [m for m in TABLE1_NAMES.rows if m in report.methods]
    methods += [m for m in report.methods if m not in TABLE1_NAMES.rows]
    pct, dist = trainable_pct(runs.records), distances(runs.records)
    header, rows, csv_rows = table1_rows(report, methods, published, pct, dist)
    table, paths = write_table(out, "table1", header, rows, csv_rows)
    layer_text, layer_paths = _layer_table(out, methods, runs.records)
    paths.update(layer_paths)
    averages, per_task, notes = gain_findings(report, published, alpha)
    nearer, distance_note = distance_findings(unit_distances(runs.records), alpha)
    per_task_text = markdown_table(FINDINGS_HEADER, [finding_row(f) for f in per_task]) if per_task else ""
    page = [
        "# EH-FT study, Table 1: fine-tuning from a PET-trained head\n",
        runs.header + "\n",
        TABLE1_NAMES.metric_note + "\n",
        "Every row uses the study's 2-layer MLP head. Two-stage rows (LP-FT, EH-FT_*) are selected among stage-2 "
        "epochs only: the reported model is the fine-tuned one. L2 distance: the selected model's backbone vs the "
        "pretrained backbone (PET updates merged), mean ± std over seeds of the per-seed average over tasks.\n",
        _scope_note(report, published),
        "## Table 1: ours (mean ± std over seeds), the paper's figure, and ours - paper\n", table,
        collapse_note(report),
        "## L2 distance from the pretrained backbone per encoder layer (mean over runs; layer 0 next to the "
        "embeddings)\n", layer_text,
        findings_table([*averages, *nearer], notes + distance_note),
        *(["### Per task (Holm over the tasks of each comparison)\n", per_task_text] if per_task else []),
        runs.resolution(report.headline),
    ]
    (out / "report.md").write_text("\n".join(page), encoding="utf-8")
    paths["report"] = out / "report.md"
    return paths
