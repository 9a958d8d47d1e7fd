"""The Revisiting paper's claims that Tables 2 and 3 (and Figure 5) test, as findings of
:mod:`pet_lightning.reports.verdicts`.

* **Per resource group, the paper's own Table 3 arrows.** Each ↗ or ↘ the paper prints for a PET method in a group
  is a one-sided claim, tested on each of our tasks in that group with the paper's test (one-tailed Welch against
  full fine-tuning), beside the paper's own gap on that task and metric (its Table 2). A group's claims are one
  Holm family. "PET is worse on high-resource tasks" is thus the paper's four ↘, not "no ↗", which a lack of power
  would reproduce by default. For low-resource tasks the paper's ↗ (Adapter, LoRA, BitFit) are tested as they
  stand, and "some PET method beats FT" is their union (Holm): we chose the paper's own arrows over a
  non-inferiority margin, because the paper states a direction and its effect sizes, and a margin would be ours.
  "No significant difference" (→) is not a claim a significance test can reproduce; those cells are listed, not
  tested.
* **Prefix tuning lags FT**: a paired sign-flip finding per task (Holm over the tasks) and the count of tasks where
  it lags (an exact sign test over tasks), never an average over tasks of different metrics.
* **Fewer trainable parameters -> lower std**: within each task the PET methods' stds are ranked against their
  parameter share, and the concordances are summed over tasks (a stratified Kendall statistic with its exact
  permutation distribution), so no task's scale and no mean of stds decides. Full fine-tuning is left out: the
  paper's claim (Key Finding 4, Figure 5) is about the parameter scale of PET methods.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence

from scipy import stats

from pet_lightning.reports.cells import GROUPS, Report
from pet_lightning.reports.stats import std_of
from pet_lightning.reports.verdicts import (
    Finding,
    any_of,
    decide,
    holm_family,
    paired_finding,
    welch_finding,
)
from pet_lightning.studies.published import StudyTable

PET_METHODS = ("adapter", "prefix", "lora", "bitfit")
_WORDS = {"better": "better", "worse": "worse"}


def _paper_gap(paper: StudyTable | None, method: str, task: str) -> float | None:
    """The paper's method - FT on ``task`` (its Table 2), None where it lacks either figure."""
    if paper is None:
        return None
    ours, full = paper.get(method, task), paper.get("full", task)
    return None if ours is None or full is None else ours - full


def group_findings(report: Report, paper2: StudyTable | None, paper3: StudyTable | None,
                   alpha: float) -> list[Finding]:
    """The paper's directional Table 3 arrows, one Holm family per resource group (see the module docstring)."""
    if paper3 is None:
        return []
    findings: list[Finding] = []
    for group in GROUPS:
        tasks = [t for t in report.tasks if report.group_of(t) == group]
        specs = []
        for method in PET_METHODS:
            word = _WORDS.get(paper3.mark(method, group) or "")
            if word is None:
                continue
            for task in tasks:
                cell, base = report.cell(task, method), report.cell(task, "full")
                if cell is None or base is None or len(cell.values) < 2 or len(base.values) < 2:
                    continue
                specs.append((method, task, word, cell.values, base.values))
        if not specs:
            continue
        level = alpha / len(specs)  # the MDE at the level the family's smallest p must meet under Holm
        raw = []
        for method, task, word, ours, full in specs:
            gap = _paper_gap(paper2, method, task)
            claim = f"{method} {word} than full on {task} ({group}; the paper's Table 3: {word})"
            detail = f"{len(ours)} vs {len(full)} seeds, {report.headline[task]}"
            if word == "better":
                raw.append(welch_finding(claim, ours, full, gap, level, detail=detail))
            else:
                raw.append(welch_finding(claim, full, ours, None if gap is None else 0.0 - gap, level, detail=detail))
        findings += holm_family(raw, alpha)
        # The union is adjusted over its own members (any_of applies Holm), from their unadjusted p values.
        better = [f for f, spec in zip(raw, specs) if spec[2] == "better"]
        if group == "low" and better:
            findings.append(any_of("some PET method beats full fine-tuning on low-resource tasks (union of the "
                                   "paper's ↗ claims above)", better, alpha))
    return findings


def sign_test_finding(claim: str, agreeing: int, tasks: int, paper_agreeing: int | None, paper_tasks: int,
                      alpha: float, detail: str = "") -> Finding:
    """Claim: most tasks go the paper's way. An exact one-sided sign test over ``tasks`` (binomial, p = 1/2);
    effects are the share of tasks agreeing minus one half; the MDE is the smallest such share that reaches
    ``alpha`` (inf when even all tasks cannot: 4 tasks give p = 1/16)."""
    p = float(stats.binom.sf(agreeing - 1, tasks, 0.5))
    p_opposite = float(stats.binom.cdf(agreeing, tasks, 0.5))
    reachable = [k for k in range(tasks + 1) if stats.binom.sf(k - 1, tasks, 0.5) < alpha]
    mde = reachable[0] / tasks - 0.5 if reachable else math.inf
    paper = None if paper_agreeing is None or not paper_tasks else paper_agreeing / paper_tasks - 0.5
    return Finding(claim, decide(p, p_opposite, mde, paper, alpha), p, p_opposite, agreeing / tasks - 0.5, mde,
                   paper, None, tasks, "exact sign test over tasks", "share of tasks - 1/2", detail)


def prefix_lags_findings(report: Report, paper2: StudyTable | None, alpha: float) -> list[Finding]:
    """Prefix tuning below full fine-tuning: per task paired by seed (Holm), and the sign count over tasks."""
    specs = []
    for task in report.tasks:
        prefix, full = report.cell(task, "prefix"), report.cell(task, "full")
        if prefix is None or full is None:
            continue
        seeds = sorted(set(prefix.scores) & set(full.scores))
        if len(seeds) >= 2:
            specs.append((task, [full.scores[s] for s in seeds], [prefix.scores[s] for s in seeds]))
    if not specs:
        return []
    level = alpha / len(specs)
    family = []
    for task, full, prefix in specs:
        gap = _paper_gap(paper2, "prefix", task)
        family.append(paired_finding(f"prefix lags full on {task} (paired by seed)", full, prefix,
                                     None if gap is None else 0.0 - gap, level,
                                     detail=f"{len(full)} seeds, {report.headline[task]}"))
    family = holm_family(family, alpha)
    lagging = sum(f.effect > 0 for f in family)
    papers = [g for task, _f, _p in specs if (g := _paper_gap(paper2, "prefix", task)) is not None]
    count = sign_test_finding(
        "prefix lags full on most tasks (sign of the mean gap per task)", lagging, len(family),
        sum(g < 0 for g in papers) if papers else None, len(papers), alpha,
        f"prefix below full on {lagging} of {len(family)} tasks; the paper's PT below FT on "
        f"{sum(g < 0 for g in papers)} of the {len(papers)} of them it reports")
    return [*family, count]


# ---------------------------------------------------------------------------------------------- fewer parameters


def _concordance(x: Sequence[float], y: Sequence[float]) -> int:
    """Kendall's S: concordant minus discordant pairs (ties in either count 0)."""
    return sum((1 if (x[i] - x[j]) * (y[i] - y[j]) > 0 else -1 if (x[i] - x[j]) * (y[i] - y[j]) < 0 else 0)
               for i, j in itertools.combinations(range(len(x)), 2))


def _null(x: Sequence[float], y: Sequence[float]) -> Counter:
    """S over every reassignment of ``y`` to the rows of one stratum (all equally likely under no trend)."""
    return Counter(_concordance(x, order) for order in itertools.permutations(y))


def stratified_trend(strata: Sequence[tuple[Sequence[float], Sequence[float]]],
                     alpha: float) -> tuple[int, int, float, float, float]:
    """``(S, pairs, p_greater, p_less, mde)`` of a trend of y on x within strata: S summed over strata, its exact
    distribution the convolution of each stratum's permutation distribution; ``pairs`` the pairs untied on x;
    ``mde`` the smallest S / pairs with p_greater < alpha (inf when none can)."""
    total: Counter = Counter({0: 1})
    observed = 0
    pairs = 0
    for x, y in strata:
        observed += _concordance(x, y)
        pairs += sum(1 for i, j in itertools.combinations(range(len(x)), 2) if x[i] != x[j])
        stratum = _null(x, y)
        combined: Counter = Counter()
        for a, ca in total.items():
            for b, cb in stratum.items():
                combined[a + b] += ca * cb
        total = combined
    count = sum(total.values())
    p_greater = sum(c for s, c in total.items() if s >= observed) / count
    p_less = sum(c for s, c in total.items() if s <= observed) / count
    significant = [s for s in sorted(total) if sum(c for t, c in total.items() if t >= s) / count < alpha]
    mde = significant[0] / pairs if significant and pairs else math.inf
    return observed, pairs, p_greater, p_less, mde


def fewer_parameters_test(report: Report, pct: dict[str, float], methods: Sequence[str],
                          paper: StudyTable | None, alpha: float) -> Finding:
    """Claim: within a task, a method with a smaller share of trainable parameters has a lower std over seeds.
    The effect is S / pairs (a Kendall tau pooled over tasks); the paper's effect is the same statistic on its own
    Table 2 stds of our tasks (with our parameter shares), where it reports them all."""
    claim = "fewer trainable parameters -> lower std over seeds (within each task; PET methods)"
    strata, paper_strata, listed = [], [], []
    for task in report.tasks:
        rows = [(pct[m], std_of(c.values), m) for m in methods
                if m in pct and (c := report.cell(task, m)) is not None and len(c.values) >= 2]
        if len(rows) >= 2:
            strata.append(([r[0] for r in rows], [r[1] for r in rows]))
            listed.append(f"{task}: " + ", ".join(f"{m} {x:.3g}% std {s:.2f}" for x, s, m in rows))
            theirs = [paper.std(m, task) if paper is not None else None for _x, _s, m in rows]
            if all(s is not None for s in theirs):
                paper_strata.append(([r[0] for r in rows], theirs))
    if not strata:
        return Finding(claim, decide(math.nan, math.nan, math.inf, None, alpha), math.nan, math.nan, math.nan,
                       math.inf, None, None, 0, "stratified Kendall (exact permutation within tasks)", "tau",
                       "needs 2+ methods with a parameter share and 2+ seeds on some task")
    s, pairs, p, p_opposite, mde = stratified_trend(strata, alpha)
    effect = s / pairs if pairs else math.nan
    paper_effect = None
    if paper_strata:
        paper_s = sum(_concordance(x, y) for x, y in paper_strata)
        paper_pairs = sum(sum(1 for i, j in itertools.combinations(range(len(x)), 2) if x[i] != x[j])
                          for x, _y in paper_strata)
        paper_effect = paper_s / paper_pairs if paper_pairs else None
    return Finding(claim, decide(p, p_opposite, mde, paper_effect, alpha), p, p_opposite, effect, mde, paper_effect,
                   None, len(strata), "stratified Kendall S over tasks (exact permutation within each task)", "tau",
                   f"S = {s} over {pairs} pairs; " + "; ".join(listed))
