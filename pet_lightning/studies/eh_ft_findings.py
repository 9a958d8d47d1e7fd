"""The findings of the EH-FT study's Table 1 (:mod:`pet_lightning.studies.eh_ft`).

* Each EH-FT variant above Finetuning and above LP-FT, per task: an exact sign-flip test over seeds, paired by
  seed, beside the paper's gain on that task (Holm over the tasks of each comparison).
* The same on average, without letting one metric's scale decide: each task's paired differences are divided by
  their root mean square (a scale that a sign flip leaves unchanged, so the test stays exact), and the sign-flip
  runs over every (task, seed) pair. The paper's effect is its gain re-averaged over our tasks, on the same scale.
* "EH-FT ends nearer the pretrained weights" than Finetuning and LP-FT: the log ratio of the L2 distances per
  (task, seed), sign-flipped; significantly farther reads contradicted.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from pet_lightning.reports.cells import Report
from pet_lightning.reports.power import paired_seeds_needed
from pet_lightning.reports.stats import mean_of
from pet_lightning.reports.verdicts import UNDERPOWERED, Finding, holm_family, paired_finding
from pet_lightning.studies.published import StudyTable

# Our row labels: the paper's names, without its LaTeX subscripts.
ROW_LABELS = {
    "finetuning": "Finetuning", "linear_probing": "Linear Probing", "prefix_tuning": "Prefix-Tuning", "lora": "LoRA",
    "bitfit": "BitFit", "top_k": "Top-K Tuning", "mixout": "Mixout", "child_tuning_d": "Child-Tuning_D",
    "lp_ft": "LP-FT", "eh_ft_lora": "EH-FT_LoRA", "eh_ft_pt": "EH-FT_PT", "eh_ft_bitfit": "EH-FT_BitFit",
    # The paper scale's Top-K rows beyond K = 3 (the study's code runs K in {3, 6, 12}; the table prints one row).
    "top_k_6": "Top-K Tuning (K = 6)", "top_k_12": "Top-K Tuning (K = 12)",
}
EH_FT_ROWS = ("eh_ft_lora", "eh_ft_pt", "eh_ft_bitfit")
BASELINES = ("finetuning", "lp_ft")
PAPER_AVERAGE = "avg"


def label(method: str) -> str:
    return ROW_LABELS.get(method, method)


def _pairs(report: Report, task: str, ours: str, theirs: str) -> tuple[list[float], list[float]]:
    a, b = report.cell(task, ours), report.cell(task, theirs)
    if a is None or b is None:
        return [], []
    seeds = sorted(set(a.scores) & set(b.scores))
    return [a.scores[s] for s in seeds], [b.scores[s] for s in seeds]


def _paper_gain(published: StudyTable | None, variant: str, baseline: str, task: str) -> float | None:
    if published is None:
        return None
    ours, theirs = published.get(variant, task), published.get(baseline, task)
    return None if ours is None or theirs is None else ours - theirs


def per_task_findings(report: Report, published: StudyTable | None, variant: str, baseline: str,
                      alpha: float) -> list[Finding]:
    found = []
    for task in report.tasks:
        ours, theirs = _pairs(report, task, variant, baseline)
        if len(ours) < 1:
            continue
        claim = f"{task}: {label(variant)} above {label(baseline)}"
        found.append(paired_finding(claim, ours, theirs, _paper_gain(published, variant, baseline, task), alpha,
                                    detail=f"{report.headline[task]} x 100, paired by seed"))
    return holm_family(found, alpha) if found else []


def average_finding(report: Report, published: StudyTable | None, variant: str, baseline: str,
                    alpha: float) -> Finding | None:
    """The average gain over our tasks, each task on its own scale (see the module docstring)."""
    units, scales, raw, paper_units, paper_points, weights = [], {}, {}, [], [], []
    for task in report.tasks:
        ours, theirs = _pairs(report, task, variant, baseline)
        if not ours:
            continue
        differences = np.subtract(ours, theirs)
        scale = float(np.sqrt(np.mean(differences ** 2)))
        scales[task], raw[task] = scale, float(np.mean(differences))
        units += list(differences / scale) if scale > 0 else [0.0] * len(differences)
        gain = _paper_gain(published, variant, baseline, task)
        if gain is not None and scale > 0:
            paper_units.append(gain / scale)
            paper_points.append(gain)
            weights.append(len(differences))
    if not units:
        return None
    paper = float(np.average(paper_units, weights=weights)) if paper_units else None
    claim = f"{label(variant)} above {label(baseline)} on average over our tasks"
    finding = paired_finding(claim, units, [0.0] * len(units), paper, alpha, unit="task sd")
    seeds = len(units) / len(scales)
    needed = None
    if len(units) > 1 and paper is not None:
        pairs_needed = paired_seeds_needed(float(np.std(units, ddof=1)), paper, alpha)
        needed = None if pairs_needed is None else math.ceil(pairs_needed / len(scales))
    paper_all = _paper_gain(published, variant, baseline, PAPER_AVERAGE)
    detail = (f"in points: ours {mean_of(list(raw.values())):+.2f} over {', '.join(raw)}; paper "
              + (f"{mean_of(paper_points):+.2f} on the {len(paper_points)} of them it has" if paper_points
                 else "has none of them")
              + (f" ({paper_all:+.2f} over its own 9 tasks)" if paper_all is not None else "")
              + "; task sd = root mean square of the task's paired differences: "
              + ", ".join(f"{task} {scale:.2f}" for task, scale in scales.items()))
    return replace(finding, seeds_needed=needed, n=len(units),
                   test=f"sign-flip over {len(units)} (task, seed) pairs ({seeds:g} seeds x {len(scales)} tasks)",
                   detail=detail)


def gain_findings(report: Report, published: StudyTable | None,
                  alpha: float) -> tuple[list[Finding], list[Finding], str]:
    """(average findings, Holm over the six comparisons; per-task findings; the note under the findings)."""
    averages, per_task = [], []
    for variant in EH_FT_ROWS:
        for baseline in BASELINES:
            if variant not in report.methods or baseline not in report.methods:
                continue
            found = average_finding(report, published, variant, baseline, alpha)
            if found is not None:
                averages.append(found)
            per_task += per_task_findings(report, published, variant, baseline, alpha)
    note = ("Average findings are one family (Holm over the EH-FT variant x baseline comparisons). Their effect is "
            "in task sds: each task's paired gains divided by their root mean square, so that no metric's scale "
            "(STS-B's spread) decides the average; the paper's effect is its own per-task gain on the same scale, "
            "averaged over our tasks that it has (its gains in points are in the evidence column). \"Seeds for the "
            "paper's effect\" counts seeds of all our tasks together. A sign-flip over n pairs cannot reach 0.05 "
            "below 5 pairs (2^-n), so per-task findings at 3-4 seeds read underpowered by design.\n")
    return holm_family(averages, alpha) if averages else [], per_task, note


def distance_findings(units: dict[tuple[str, str, int], float], alpha: float) -> tuple[list[Finding], str]:
    """EH-FT variants nearer the pretrained weights than each baseline: log(d_baseline / d_variant) per (task,
    seed), sign-flipped; Holm over the comparisons."""
    found = []
    for variant in EH_FT_ROWS:
        for baseline in BASELINES:
            keys = sorted((task, seed) for method, task, seed in units if method == variant
                          and units.get((baseline, task, seed), 0) > 0 and units[(variant, task, seed)] > 0)
            claim = f"{label(variant)} ends nearer the pretrained weights than {label(baseline)} (L2 distance)"
            if not keys:
                if any(method in (variant, baseline) for method, _task, _seed in units):
                    found.append(Finding(claim, UNDERPOWERED, math.nan, math.nan, math.nan, math.inf, None, None, 0,
                                         "sign-flip over (task, seed) pairs", "log ratio",
                                         "no (task, seed) with the distance of both recorded"))
                continue
            near = [math.log(units[(baseline, t, s)]) for t, s in keys]
            far = [math.log(units[(variant, t, s)]) for t, s in keys]
            ratio = math.exp(mean_of([b - a for a, b in zip(near, far)]))
            finding = paired_finding(claim, near, far, None, alpha, unit="log ratio",
                                     detail=f"distance ratio {label(variant)} / {label(baseline)} {ratio:.3f} "
                                            "(geometric mean); the paper prints no distances")
            found.append(replace(finding, test=f"sign-flip over {len(keys)} (task, seed) pairs"))
    note = ("Distance findings are one family (Holm). Effect: log(baseline distance / EH-FT distance), + meaning "
            "nearer; a significant - is contradicted (significantly farther). Against Finetuning the stage-2 "
            "schedule is shorter (stage 1 takes its share of the epochs); LP-FT has the same stage 2, so it is the "
            "control that separates the head's effect from the schedule's.\n")
    return (holm_family(found, alpha) if found else []), note
