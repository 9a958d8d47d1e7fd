"""Verdicts that say what their test could have detected.

Every finding of a study report is one :class:`Finding`: a claim of a paper, the one-sided p value in the paper's
direction and in the opposite one, the effect seen here, the minimum detectable effect (MDE) of the test at
``alpha`` and 80% power given the spread seen and the number of seeds, the paper's own effect from its published
table, and the number of seeds that would detect the paper's effect. One rule turns these into one of four words:

* **reproduces**: significant in the paper's direction;
* **contradicted**: significant in the opposite direction;
* **inconclusive**: not significant although the test could have detected the paper's effect (MDE at or below
  it), so the effect here is smaller than claimed; the direction seen is stated;
* **underpowered**: not significant, and the paper's effect is smaller than the test could detect (or the test
  cannot reach ``alpha`` at this n at all, e.g. a sign-flip test over 4 seeds or Kendall's tau over 3 rows).

The tests are scipy's: an exact sign-flip permutation test for paired seeds (``scipy.stats.permutation_test``,
p >= 2^-n, never 0 as a t test on equal differences gives), Welch for unpaired samples, Kendall's tau one-sided,
an F test for a ratio of spreads; what each could detect comes from :mod:`pet_lightning.reports.power`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from pet_lightning.reports.power import (
    MAX_SEEDS,
    kendall_critical_tau,
    paired_mde,
    paired_seeds_needed,
    seeds_needed,
    variance_ratio_mde,
    welch_mde,
    welch_seeds_needed,
)

REPRODUCES, CONTRADICTED, INCONCLUSIVE, UNDERPOWERED = "reproduces", "contradicted", "inconclusive", "underpowered"
VERDICTS = (REPRODUCES, CONTRADICTED, INCONCLUSIVE, UNDERPOWERED)
# Past this many pairs the sign-flip distribution is sampled instead of enumerated (2^16 flips is exact enough).
EXACT_SIGN_FLIP_MAX = 16


@dataclass(frozen=True)
class Finding:
    """One claim of a paper tested on our runs.

    Effects are signed so that positive is the paper's direction, in the claim's own unit (``unit``: e.g.
    "points", "tau", "std ratio"). ``p`` is the one-sided p in the paper's direction (Holm-adjusted when the
    finding belongs to a family, see :func:`holm_family`), ``p_opposite`` the one-sided p the other way.
    """

    claim: str
    verdict: str
    p: float
    p_opposite: float
    effect: float
    mde: float
    paper_effect: float | None
    seeds_needed: int | None
    n: int
    test: str
    unit: str = "points"
    detail: str = ""
    p_raw: float | None = None  # before the family's Holm adjustment; None when not adjusted

    @property
    def direction(self) -> str:
        if math.isnan(self.effect) or self.effect == 0:
            return "no difference"
        return "paper's direction" if self.effect > 0 else "opposite direction"

    @property
    def verdict_text(self) -> str:
        """The verdict word, with the direction seen where the verdict alone does not say it."""
        if self.verdict in (INCONCLUSIVE, UNDERPOWERED):
            return f"{self.verdict} ({self.direction})"
        return self.verdict


def decide(p: float, p_opposite: float, mde: float, paper_effect: float | None, alpha: float) -> str:
    """The four-word rule. Without a published effect size to compare, a test that could reach ``alpha`` at all
    (finite MDE) reads inconclusive; one that never could reads underpowered."""
    if p < alpha:
        return REPRODUCES
    if p_opposite < alpha:
        return CONTRADICTED
    if math.isinf(mde) or math.isnan(mde):
        return UNDERPOWERED
    if paper_effect is not None and not math.isnan(paper_effect) and mde > abs(paper_effect):
        return UNDERPOWERED
    return INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------------------
# Tests, each returning (p in the claim's direction, p the other way)


def sign_flip_p(differences: Sequence[float]) -> tuple[float, float]:
    """Exact one-sided sign-flip permutation p values of mean(differences) > 0 and < 0
    (``scipy.stats.permutation_test``, paired samples). Equal non-zero differences over n seeds give 2^-n."""
    values = np.asarray(differences, dtype=float)
    n = len(values)
    if n < 1 or np.all(values == 0):
        return 1.0, 1.0
    if n == 1:
        # Two sign assignments, d and -d (scipy's test wants two or more): the observed side has p = 1/2.
        return (0.5, 1.0) if values[0] > 0 else (1.0, 0.5)
    resamples = 2 ** n if n <= EXACT_SIGN_FLIP_MAX else 20_000
    zeros = np.zeros(n)

    def mean_difference(x, y, axis):
        return np.mean(x - y, axis=axis)

    greater = stats.permutation_test((values, zeros), mean_difference, permutation_type="samples",
                                     alternative="greater", n_resamples=resamples, vectorized=True, random_state=0)
    less = stats.permutation_test((values, zeros), mean_difference, permutation_type="samples",
                                  alternative="less", n_resamples=resamples, vectorized=True, random_state=0)
    return float(greater.pvalue), float(less.pvalue)


def welch_p(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """One-sided Welch p values of mean(a) > mean(b) and mean(a) < mean(b). With no spread on either side the
    test is undefined; the means are then compared exactly: equal means give (1, 1), and otherwise the side the
    means favour gets 0 only if each side has 2+ values (constant, distinct samples)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    if _constant(a) and _constant(b):
        difference = float(np.mean(a) - np.mean(b))
        return (0.0, 1.0) if difference > 0 else (1.0, 0.0) if difference < 0 else (1.0, 1.0)
    greater = stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    less = stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue
    return float(greater), float(less)


def _constant(values: Sequence[float]) -> bool:
    # Scores stored as fractions and scaled by 100 differ in the last bit: equal to 1e-9 of their size is equal.
    array = np.asarray(values, dtype=float)
    return bool(np.allclose(array, array[0], rtol=1e-9, atol=1e-12))


def kendall_p(ours: Sequence[float], theirs: Sequence[float]) -> tuple[float, float, float]:
    """Kendall's tau-b with one-sided p values (tau > 0, tau < 0): ``(tau, p_greater, p_less)``."""
    if len(ours) < 2:
        return math.nan, math.nan, math.nan
    greater = stats.kendalltau(ours, theirs, alternative="greater")
    less = stats.kendalltau(ours, theirs, alternative="less")
    return float(greater.statistic), float(greater.pvalue), float(less.pvalue)


def variance_ratio_p(larger: Sequence[float], smaller: Sequence[float]) -> tuple[float, float]:
    """One-sided F test p values of sd(larger) > sd(smaller) and the reverse (normal scores assumed)."""
    if len(larger) < 2 or len(smaller) < 2:
        return math.nan, math.nan
    var_l, var_s = float(np.var(larger, ddof=1)), float(np.var(smaller, ddof=1))
    df_l, df_s = len(larger) - 1, len(smaller) - 1
    if var_l == 0 and var_s == 0:
        return 1.0, 1.0
    if var_s == 0:
        return 0.0, 1.0
    ratio = var_l / var_s
    return float(stats.f.sf(ratio, df_l, df_s)), float(stats.f.cdf(ratio, df_l, df_s))


# ----------------------------------------------------------------------------------------------------------------
# Findings


def paired_finding(claim: str, ours: Sequence[float], reference: Sequence[float], paper_effect: float | None,
                   alpha: float = 0.05, unit: str = "points", detail: str = "") -> Finding:
    """Claim: ``ours`` exceeds ``reference`` (the same seeds, in order). To test "below", pass them swapped and
    give the paper's effect as the amount it says ``reference`` is below ``ours``."""
    if len(ours) != len(reference):
        raise ValueError(f"a paired finding needs as many values on each side (got {len(ours)} and {len(reference)})")
    differences = [a - b for a, b in zip(ours, reference)]
    n = len(differences)
    p, p_opposite = sign_flip_p(differences) if n else (math.nan, math.nan)
    mde = paired_mde(differences, alpha)
    sd = float(np.std(differences, ddof=1)) if n > 1 else math.nan
    needed = paired_seeds_needed(sd, paper_effect, alpha) if not math.isnan(sd) else None
    effect = float(np.mean(differences)) if n else math.nan
    return Finding(claim, decide(p, p_opposite, mde, paper_effect, alpha), p, p_opposite, effect, mde, paper_effect,
                   needed, n, "sign-flip permutation (paired by seed)", unit, detail)


def welch_finding(claim: str, ours: Sequence[float], reference: Sequence[float], paper_effect: float | None,
                  alpha: float = 0.05, unit: str = "points", detail: str = "") -> Finding:
    """Claim: mean(ours) > mean(reference), unpaired (one-sided Welch)."""
    p, p_opposite = welch_p(ours, reference)
    mde = welch_mde(ours, reference, alpha)
    effect = float(np.mean(ours) - np.mean(reference)) if len(ours) and len(reference) else math.nan
    needed = None
    if len(ours) > 1 and len(reference) > 1:
        needed = welch_seeds_needed(float(np.std(ours, ddof=1)), float(np.std(reference, ddof=1)), paper_effect,
                                    alpha)
    if math.isnan(p):
        p = p_opposite = math.nan
    return Finding(claim, decide(p, p_opposite, mde, paper_effect, alpha), p, p_opposite, effect, mde, paper_effect,
                   needed, min(len(ours), len(reference)), "one-sided Welch t", unit, detail)


def kendall_finding(claim: str, ours: Sequence[float], theirs: Sequence[float], alpha: float = 0.05,
                    detail: str = "") -> Finding:
    """Claim: our ordering of the rows agrees with the paper's (Kendall's tau > 0). The paper's effect is its own
    order (tau = 1); the MDE is the smallest tau this many rows can show significant."""
    tau, p, p_opposite = kendall_p(ours, theirs)
    mde = kendall_critical_tau(len(ours), alpha)
    return Finding(claim, decide(p, p_opposite, mde, 1.0, alpha), p, p_opposite, tau, mde, 1.0, None, len(ours),
                   "Kendall's tau-b, one-sided", "tau", detail)


def variance_finding(claim: str, larger: Sequence[float], smaller: Sequence[float], paper_ratio: float | None,
                     alpha: float = 0.05, detail: str = "") -> Finding:
    """Claim: the spread of ``larger`` exceeds that of ``smaller`` (one-sided F test on the variance ratio).
    Effects are sd ratios on a log scale's sign: ``effect`` is sd(larger) / sd(smaller) - 1 and ``paper_effect``
    is the paper's ratio - 1, so that positive is the paper's direction."""
    p, p_opposite = variance_ratio_p(larger, smaller)
    sd_l = float(np.std(larger, ddof=1)) if len(larger) > 1 else math.nan
    sd_s = float(np.std(smaller, ddof=1)) if len(smaller) > 1 else math.nan
    effect = sd_l / sd_s - 1 if sd_s else (math.inf if sd_l else 0.0)
    mde = variance_ratio_mde(len(larger), len(smaller), alpha) - 1
    paper = None if paper_ratio is None else paper_ratio - 1

    def mde_at(n: int) -> float:
        return variance_ratio_mde(n, n, alpha) - 1

    needed = seeds_needed(mde_at, paper) if paper is not None else None
    return Finding(claim, decide(p, p_opposite, mde, paper, alpha), p, p_opposite, effect, mde, paper, needed,
                   min(len(larger), len(smaller)), "one-sided F test of variances", "sd ratio - 1", detail)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p values, in the input order (NaN stays NaN and is not counted)."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m, adjusted, running = len(indexed), [math.nan] * len(pvalues), 0.0
    for rank, (p, index) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def holm_family(findings: Sequence[Finding], alpha: float = 0.05) -> list[Finding]:
    """The findings of one family with Holm-adjusted p values (both directions) and their verdicts re-decided."""
    adjusted = holm([f.p for f in findings])
    adjusted_opposite = holm([f.p_opposite for f in findings])
    return [replace(f, p=p, p_opposite=q, p_raw=f.p, verdict=decide(p, q, f.mde, f.paper_effect, alpha))
            for f, p, q in zip(findings, adjusted, adjusted_opposite)]


def any_of(claim: str, family: Sequence[Finding], alpha: float = 0.05) -> Finding:
    """A union claim ("some method is better"): reproduces when any member does after Holm; contradicted when every
    member is; otherwise the member closest to its target speaks for the family."""
    adjusted = holm_family(family, alpha)
    if not adjusted:
        raise ValueError(f"{claim}: a union claim needs at least one member")
    best = min(adjusted, key=lambda f: (f.p if not math.isnan(f.p) else 2.0))
    verdict = best.verdict
    if verdict != REPRODUCES and all(f.verdict == CONTRADICTED for f in adjusted):
        verdict = CONTRADICTED
    elif verdict == CONTRADICTED:
        verdict = INCONCLUSIVE
    members = "; ".join(f"{f.claim}: p {fmt_p(f.p)}" for f in adjusted)
    return replace(best, claim=claim, verdict=verdict, detail=f"Holm over {len(adjusted)}: {members}")


def all_of(claim: str, family: Sequence[Finding], alpha: float = 0.05) -> Finding:
    """An intersection claim ("every pair is ordered"): reproduces only when every member does (an intersection-union
    test needs no adjustment); contradicted when any member is; otherwise the weakest member speaks."""
    if not family:
        raise ValueError(f"{claim}: an intersection claim needs at least one member")
    verdicts = [f.verdict for f in family]
    weakest = max(family, key=lambda f: (f.p if not math.isnan(f.p) else 2.0))
    verdict = (REPRODUCES if all(v == REPRODUCES for v in verdicts) else CONTRADICTED if CONTRADICTED in verdicts
               else weakest.verdict)
    members = "; ".join(f"{f.claim}: p {fmt_p(f.p)}" for f in family)
    return replace(weakest, claim=claim, verdict=verdict, detail=f"all {len(family)} of: {members}")


def cohen_kappa(ours: Sequence[str], theirs: Sequence[str]) -> float:
    """Agreement between two markings beyond chance (``sklearn.metrics.cohen_kappa_score``); NaN with < 2 items."""
    from sklearn.metrics import cohen_kappa_score

    if len(ours) < 2:
        return math.nan
    if len(set(ours) | set(theirs)) < 2:
        return 1.0
    return float(cohen_kappa_score(list(ours), list(theirs)))


# ----------------------------------------------------------------------------------------------------------------
# The reported split's resolution


def example_resolution(examples: int) -> float:
    """Points (x 100) that one example moves an accuracy on ``examples`` examples."""
    return math.nan if examples <= 0 else 100.0 / examples


def bootstrap_over_examples(statistic: Callable[..., float], *columns: Sequence, confidence: float = 0.95,
                            resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A percentile interval of ``statistic(*columns)`` over examples resampled with replacement, the columns kept
    paired (``scipy.stats.bootstrap``). ``statistic`` takes the columns (e.g. labels, predictions) and returns a
    number; NaN values of a resample (a correlation of constant predictions) are dropped."""
    arrays = [np.asarray(column) for column in columns]
    if not arrays or len(arrays[0]) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    values = []
    for _ in range(resamples):
        index = rng.integers(0, n, n)
        value = statistic(*(array[index] for array in arrays))
        if not math.isnan(value):
            values.append(value)
    if not values:
        return math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


# ----------------------------------------------------------------------------------------------------------------
# Text


def fmt_p(p: float | None) -> str:
    return "–" if p is None or math.isnan(p) else f"{p:.3g}"


def fmt_effect(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "–"
    return "∞" if math.isinf(value) else f"{value:+.{digits}f}"


def fmt_amount(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "–"
    return "∞ (cannot reach alpha)" if math.isinf(value) else f"{value:.{digits}f}"


def fmt_seeds(value: int | None) -> str:
    if value is None:
        return "–"
    return f"> {MAX_SEEDS}" if value > MAX_SEEDS else str(value)


FINDINGS_HEADER = [
    "claim of the paper", "verdict here", "p (one-sided; Holm where a family)", "effect here",
    "MDE (alpha 0.05, power 0.8)", "paper's effect", "seeds for the paper's effect", "test and evidence",
]


def finding_row(finding: Finding) -> list[str]:
    p = fmt_p(finding.p) + (f" (raw {fmt_p(finding.p_raw)})" if finding.p_raw is not None else "")
    unit = f" {finding.unit}" if finding.unit else ""
    evidence = f"{finding.test}, n = {finding.n}" + (f"; {finding.detail}" if finding.detail else "")
    return [finding.claim, f"**{finding.verdict_text}**", p, fmt_effect(finding.effect) + unit,
            fmt_amount(finding.mde) + (unit if not math.isinf(finding.mde) else ""),
            fmt_effect(finding.paper_effect) + (unit if finding.paper_effect is not None else ""),
            fmt_seeds(finding.seeds_needed), evidence]
