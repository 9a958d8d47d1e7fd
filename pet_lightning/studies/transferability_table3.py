"""Transferability study, Table 3: the LayerNorms of one layer at a time, compared with the paper by relative depth.

The paper tunes the LayerNorms of one of BERT-base's 12 layers per row; a cpu-scale run has MiniLM's 6. Layer k of
L (numbered from 1, next to the embeddings) covers the depth fraction ((k-1)/L, k/L]; it sits beside the paper's
layers covering the same fraction, their figures averaged with weights = the overlap (L = 6: the mean of the
paper's layers 2k-1 and 2k; L = 12: layer k itself). "Middle layers transfer best" is tested per task as a paired
contrast over seeds, mean of the middle third minus mean of the outer thirds, beside the same contrast on the
paper's table, Holm over the tasks; the best band per task is compared with the paper's descriptively.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from pet_lightning.errors import StudyError
from pet_lightning.reports.cells import Report, build_report
from pet_lightning.reports.stats import mean_of
from pet_lightning.reports.verdicts import Finding, holm_family, paired_finding
from pet_lightning.studies.common import StudyRuns, cell_mean, cell_text, collapse_note, findings_table, write_table
from pet_lightning.studies.published import PaperNames, StudyTable, load_study_table
from pet_lightning.studies.registry import layout

LAYER_METHOD = re.compile(r"^layer_(\d+)$")
PAPER_LAYER_ROW = re.compile(r"^layernorm_layer_(\d+)$")
PAPER_LAYERS = 12  # BERT-base; checked against the stored table when it is read
# `layer_j` here names the PAPER's layer j: our layer k is read through depth_overlap, never by its own index.
TABLE3_NAMES = PaperNames(
    rows={"full_ft": "Full-FT", **{f"layer_{j}": f"layernorm_layer_{j}" for j in range(1, PAPER_LAYERS + 1)}},
    metrics={"sts-b": "spearman"},
    metric_note=("Metrics, as the paper's (those of its Table 1): CoLA Matthews correlation (`mcc`), MRPC F1, STS-B "
                 "Spearman correlation (`spearman`, not our Pearson headline), RTE accuracy."),
)
NOT_IN_PAPER = "(not in the paper)"


def band_of(layer: int, layers: int) -> str:
    """``lower`` / ``middle`` / ``upper`` third of ``layers`` layers numbered from 1 (6 layers: 1-2, 3-4, 5-6;
    12: 1-4, 5-8, 9-12), by relative depth."""
    third = layers / 3
    return "lower" if layer <= third else "middle" if layer <= 2 * third else "upper"


def depth_overlap(layer: int, layers: int, paper_layers: int = PAPER_LAYERS) -> list[tuple[int, Fraction]]:
    """The paper's layers covering the same depth fraction as our ``layer`` of ``layers``: ``(j, weight)`` with
    weight = the fraction of our layer's depth that paper layer j covers (the weights sum to 1)."""
    if not 1 <= layer <= layers:
        raise ValueError(f"layer {layer} is not one of 1..{layers}: number layers from 1 next to the embeddings")
    low, high = Fraction(layer - 1, layers), Fraction(layer, layers)
    found = []
    for j in range(1, paper_layers + 1):
        overlap = min(high, Fraction(j, paper_layers)) - max(low, Fraction(j - 1, paper_layers))
        if overlap > 0:
            found.append((j, overlap * layers))
    return found


def paper_at_depth(published: StudyTable | None, layer: int, layers: int, task: str,
                   paper_layers: int = PAPER_LAYERS) -> float | None:
    """The paper's figure at our layer's depth (overlap-weighted mean); None when any of its layers lacks one."""
    if published is None:
        return None
    total = 0.0
    for j, weight in depth_overlap(layer, layers, paper_layers):
        value = published.get(f"layer_{j}", task)
        if value is None:
            return None
        total += float(weight) * value
    return total


def _span(layer: int, layers: int, paper_layers: int) -> str:
    js = [j for j, _ in depth_overlap(layer, layers, paper_layers)]
    weights = {w for _, w in depth_overlap(layer, layers, paper_layers)}
    text = f"#{js[0]}" if len(js) == 1 else f"#{js[0]}–#{js[-1]}"
    return text + (" (weighted)" if len(weights) > 1 else "")


def _layer_methods(methods: list[str]) -> list[tuple[int, str]]:
    return sorted((int(m.group(1)), name) for name in methods if (m := LAYER_METHOD.match(name)))


def _paper_layer_count(published: StudyTable | None) -> int:
    if published is None:
        return PAPER_LAYERS
    found = [int(m.group(1)) for row in published.table.rows if (m := PAPER_LAYER_ROW.match(row))]
    return max(found, default=PAPER_LAYERS)


def _paper_contrast(published: StudyTable | None, task: str, paper_layers: int) -> tuple[float, float] | None:
    """The paper's middle-third mean and outer-thirds mean on ``task`` (its own layers); None when incomplete."""
    values = {j: published.get(f"layer_{j}", task) if published else None for j in range(1, paper_layers + 1)}
    if any(v is None for v in values.values()):
        return None
    middle = [v for j, v in values.items() if band_of(j, paper_layers) == "middle"]
    outer = [v for j, v in values.items() if band_of(j, paper_layers) != "middle"]
    return mean_of(middle), mean_of(outer)


def _band_label(layers: list[int], count: int, band: str) -> str:
    return ", ".join(f"L{k}" for k in layers if (band_of(k, count) == "middle") == (band == "middle"))


def _contrast_findings(report: Report, layers: list[tuple[int, str]], count: int, published: StudyTable | None,
                       paper_layers: int) -> list[Finding]:
    """Per task: per seed, mean over our middle third minus mean over the outer thirds (one-sided sign-flip,
    paired by seed), beside the same contrast on the paper's table; Holm over the tasks."""
    members = []
    tasks = [t for t in report.tasks if any(report.cell(t, name) is not None for _k, name in layers)]
    # MDE and seeds needed at alpha / m, the level Holm's first step asks of the smallest p.
    level = report.alpha / max(len(tasks), 1)
    for task in tasks:
        cells = {k: report.cell(task, name) for k, name in layers if report.cell(task, name) is not None}
        middle = [k for k in cells if band_of(k, count) == "middle"]
        outer = [k for k in cells if band_of(k, count) != "middle"]
        if not middle or not outer:
            continue
        seeds = sorted(set.intersection(*(set(cell.scores) for cell in cells.values())))
        mid = [mean_of([cells[k].scores[s] for k in middle]) for s in seeds]
        rest = [mean_of([cells[k].scores[s] for k in outer]) for s in seeds]
        paper = _paper_contrast(published, task, paper_layers)
        paper_effect = None if paper is None else paper[0] - paper[1]
        detail = (f"per seed ({', '.join(map(str, seeds))}): mean of {_band_label(middle, count, 'middle')} − mean "
                  f"of {_band_label(outer, count, 'outer')}; paper: mean of its middle third − its outer thirds = "
                  + (f"{paper[0]:.2f} − {paper[1]:.2f}" if paper else NOT_IN_PAPER))
        members.append(paired_finding(f"{task}: the middle third's LayerNorms beat the outer thirds'", mid, rest,
                                      paper_effect, level, detail=detail))
    return holm_family(members, report.alpha) if members else []


def _best(values: dict[int, float]) -> int | None:
    """The layer of the highest value; ties go to the lowest layer."""
    known = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    return max(sorted(known), key=lambda k: known[k]) if known else None


def _best_bands(report: Report, layers: list[tuple[int, str]], count: int, published: StudyTable | None,
                paper_layers: int) -> tuple[list[list[str]], list[dict[str, Any]]]:
    rows, csv_rows = [], []
    for task in report.tasks:
        ours = _best({k: cell_mean(report.cell(task, name)) for k, name in layers})
        paper = _best({j: published.get(f"layer_{j}", task) if published else None
                       for j in range(1, paper_layers + 1)})
        ours_band = band_of(ours, count) if ours else None
        paper_band = band_of(paper, paper_layers) if paper else None
        same = "–" if ours_band is None or paper_band is None else "yes" if ours_band == paper_band else "no"
        rows.append([f"{task} ({report.headline[task]})", f"L{ours} of {count} ({ours_band})" if ours else "–",
                     f"#{paper} of {paper_layers} ({paper_band})" if paper else NOT_IN_PAPER, same])
        csv_rows.append({"task": task, "best_layer": ours, "best_band": ours_band, "paper_best_layer": paper,
                         "paper_best_band": paper_band})
    return rows, csv_rows


@layout("transferability_table3")
def write_table3(runs: StudyRuns, out: Path, alpha: float) -> dict[str, Path]:
    report = build_report(runs.records, baseline="full_ft", alpha=alpha, metrics=TABLE3_NAMES.metrics)
    published = load_study_table("transferability_table3", TABLE3_NAMES)
    layers = _layer_methods(report.methods)
    if not layers:
        raise StudyError("no layer_<k> runs in these results: Table 3 tunes the LayerNorms of one layer per row")
    count, paper_layers = max(k for k, _ in layers), _paper_layer_count(published)
    tasks = report.tasks
    header = ["Layer", "depth", "band", "paper's layers"]
    header += [name for task in tasks for name in (f"{task} ({report.headline[task]})", "paper", "Δ")]
    rows, csv_rows = [], []
    for k, name in layers + [(0, "full_ft")]:
        if k:
            row = [f"L{k}", f"{(k - 1) / count:.2f}–{k / count:.2f}", band_of(k, count),
                   _span(k, count, paper_layers)]
        else:
            row = ["Full-FT", "all", "–", "Full-FT"]
        csv_row: dict[str, Any] = {"method": name, "layer": k or None, "paper_layers": row[3]}
        for task in tasks:
            cell = report.cell(task, name)
            mean = cell_mean(cell)
            if k:
                paper = paper_at_depth(published, k, count, task, paper_layers)
                single = depth_overlap(k, count, paper_layers)
                std = published.std(f"layer_{single[0][0]}", task) if published and len(single) == 1 else None
            else:
                paper = published.get("full_ft", task) if published else None
                std = published.std("full_ft", task) if published else None
            paper_cell = NOT_IN_PAPER if paper is None else f"{paper:.1f}" + ("" if std is None else f" ± {std:.1f}")
            delta = "–" if paper is None or math.isnan(mean) else f"{mean - paper:+.1f}"
            row += [cell_text(cell), paper_cell, delta]
            csv_row.update({f"{task}_mean": mean, f"{task}_n": len(cell.values) if cell else 0,
                            f"{task}_paper": paper})
        rows.append(row)
        csv_rows.append(csv_row)
    table, paths = write_table(out, "table3", header, rows, csv_rows)
    best_rows, best_csv = _best_bands(report, layers, count, published, paper_layers)
    best_table, best_paths = write_table(out, "table3_best_band", ["Task", "our best layer", "paper's best layer",
                                                                    "same band"], best_rows, best_csv)
    paths.update(best_paths)
    findings = _contrast_findings(report, layers, count, published, paper_layers)
    citation = (published.citation.rstrip(".") if published
                else "no published Table 3 stored (see studies/published/README.md)")
    mapping = ", ".join(f"our L{k} ↔ {_span(k, count, paper_layers)}" for k in range(1, min(count, 3) + 1))
    page = [
        "# Transferability study, Table 3: the LayerNorms of one layer\n",
        runs.header + "\n",
        TABLE3_NAMES.metric_note + f" Published figures: {citation}.\n",
        f"**Layers compared by relative depth.** Ours are numbered 1..{count} from the embeddings up (L1 = 0-based "
        f"index 0), the paper's #1..#{paper_layers}. Our layer k of {count} covers the depth fraction "
        f"((k−1)/{count}, k/{count}] and sits beside the paper's layers covering the same fraction, their figures "
        f"averaged with weights = the overlap ({mapping}, ...); `paper` shows that mean (± the paper's std only where "
        f"one paper layer maps alone), Δ = ours − paper (descriptive: another model, another sample of examples). "
        "Bands are thirds of depth: lower / middle / upper "
        f"({', '.join(_band_span(b, count, 'L') for b in ('lower', 'middle', 'upper'))} here; "
        f"{', '.join(_band_span(b, paper_layers, '#') for b in ('lower', 'middle', 'upper'))} in the paper).\n",
        "## Table 3: mean ± std over seeds\n", table, collapse_note(report),
        "## Best layer per task (descriptive, no test; ties go to the lower layer)\n", best_table,
        findings_table(findings, _findings_note(len(findings), report.alpha)),
        runs.resolution(dict(report.headline)),
    ]
    (out / "report.md").write_text("\n".join(page), encoding="utf-8")
    paths["report"] = out / "report.md"
    return paths


def _band_span(band: str, layers: int, prefix: str) -> str:
    members = [k for k in range(1, layers + 1) if band_of(k, layers) == band]
    return f"{prefix}{members[0]}–{prefix}{members[-1]}" if len(members) > 1 else f"{prefix}{members[0]}"


def _findings_note(tasks: int, alpha: float) -> str:
    if not tasks:
        return ""
    return (f"Middle layers: one paired contrast per task (per seed, the mean over our middle third minus the mean "
            f"over the outer thirds; exact one-sided sign-flip over seeds, which cannot reach p < {alpha / tasks:.3g} "
            f"with fewer than {math.floor(math.log2(tasks / alpha)) + 1} seeds), Holm over the {tasks} task(s) as one "
            f"family; MDE and seeds needed at alpha / {tasks}, the level Holm's first step asks of the smallest p. "
            "The paper's effect is the same contrast on its own 12 layers (mean of #5–#8 minus the mean of #1–#4 and "
            "#9–#12) on the task's metric. Tasks are not combined: their metrics differ in scale.")
