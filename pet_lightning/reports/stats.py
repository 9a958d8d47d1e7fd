"""The statistics of the reports: spreads over seeds, one-tailed Welch tests (scipy.stats) and the combination of
per-task tests into one per resource group.

Zero spread follows one convention everywhere (the one of :mod:`pet_lightning.reports.verdicts`): no difference at
all is no evidence (p = 1 both ways); samples that are each constant but differ are compared exactly (Welch: the
side the means favour gets p = 0; paired seeds: the exact sign-flip p, 2^-n, never 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

from pet_lightning.reports.verdicts import sign_flip_p, welch_p

UP, DOWN = "↑", "↓"
# A one-sided p of exactly 0 or 1 (constant samples) would give an infinite z; clip it so that one such task counts
# as very strong, not infinite, evidence in the group's combination.
_Z_CLIP = 8.0


def welch_t_test(a: Sequence[float], b: Sequence[float], alternative: str = "two-sided") -> tuple[float, float, float]:
    """Welch's unequal-variance t-test of mean_of(a) vs mean_of(b) (``scipy.stats.ttest_ind(equal_var=False)``):
    ``(t, degrees of freedom, p)``.

    ``alternative``: ``greater`` (mean_of(a) > mean_of(b)), ``less`` or ``two-sided``. Needs two or more values on each
    side. With no spread on either side t and df are undefined (NaN) and p follows the module's zero-spread
    convention: equal means give p = 1, distinct means p = 0 on the side they favour (two-sided: 0).
    """
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative={alternative!r}: use greater, less or two-sided")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"Welch's t-test needs at least 2 values per side (got {len(a)} and {len(b)}): run more seeds"
        )
    if std_of(a) == 0 and std_of(b) == 0:
        greater, less = welch_p(a, b)
        p = {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]
        return math.nan, math.nan, p
    result = stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
    return float(result.statistic), float(result.df), float(result.pvalue)


def mean_of(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def std_of(values: Sequence[float]) -> float:
    # Sample standard deviation (ddof=1), as across-seed spreads are usually reported.
    if len(values) < 2:
        return math.nan
    mean = mean_of(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def std_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The chi-square confidence interval of the population std from a sample's std (normal scores): at n = 5 it
    is [0.60 s, 2.87 s], so two stds of 5 seeds each rarely differ significantly."""
    n, s = len(values), std_of(values)
    if n < 2 or math.isnan(s):
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    return (s * math.sqrt((n - 1) / stats.chi2.ppf(1 - tail, n - 1)),
            s * math.sqrt((n - 1) / stats.chi2.ppf(tail, n - 1)))


def significance(scores: Sequence[float], baseline: Sequence[float], alpha: float) -> tuple[str, float, float]:
    """``(mark, p_greater, p_less)``: ↑ / ↓ where the one-tailed Welch test has p < alpha, else ``""``. The two
    tails together are a two-sided test at 2 x alpha, as in the Revisiting paper's caption."""
    if len(scores) < 2 or len(baseline) < 2:
        return "", math.nan, math.nan
    p_greater, p_less = welch_p(scores, baseline)
    mark = UP if p_greater < alpha else DOWN if p_less < alpha else ""
    return mark, p_greater, p_less


def stouffer(p_greater: Sequence[float]) -> tuple[float, float]:
    """One-sided p values of several independent tasks combined with equal weights (Stouffer's z):
    ``(p_greater, p_less)`` of the combination. Each task counts once whatever its metric's scale, unlike a test on
    the average score (where STS-B's spread of 8 Pearson points would decide a group with MRPC's 0.5 F1)."""
    if not p_greater or any(math.isnan(p) for p in p_greater):
        return math.nan, math.nan
    zs = [max(-_Z_CLIP, min(_Z_CLIP, float(stats.norm.isf(p)))) for p in p_greater]
    z = sum(zs) / math.sqrt(len(zs))
    return float(stats.norm.sf(z)), float(stats.norm.cdf(z))


def paired_t_test(a: Sequence[float], b: Sequence[float], alternative: str = "greater") -> tuple[float, float]:
    """Paired t-test of a vs b (the same seeds in the same order; ``scipy.stats.ttest_rel``): ``(t, p)``.

    NaN when fewer than two pairs. No difference at all: t NaN, p = 1 (no evidence). Every difference the same
    non-zero value: t is +-inf, and p is the exact sign-flip p (2^-n in the direction seen; two-sided twice the
    smaller), not 0, which a t test on a spread of zero would give (two seeds gaining one example each would
    otherwise be "significant"). Prefer :func:`pet_lightning.reports.verdicts.sign_flip_p` for new findings.
    """
    if len(a) != len(b):
        raise ValueError(f"a paired test needs as many values on each side (got {len(a)} and {len(b)})")
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative={alternative!r}: use greater, less or two-sided")
    differences = [x - y for x, y in zip(a, b)]
    if len(differences) < 2:
        return math.nan, math.nan
    if all(d == 0 for d in differences):
        return math.nan, 1.0
    if std_of(differences) == 0:
        greater, less = sign_flip_p(differences)
        p = {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]
        return math.copysign(math.inf, differences[0]), p
    result = stats.ttest_rel(a, b, alternative=alternative)
    return float(result.statistic), float(result.pvalue)


def kendall_tau(a: Sequence[float], b: Sequence[float], alternative: str = "greater") -> tuple[float, float]:
    """Kendall's tau-b between two scorings of the same items (``scipy.stats.kendalltau``): ``(tau, p)``.

    One-sided by default (``greater``: the claims here are "the orders agree"); a two-sided p would double it, and
    4 rows could never reach 0.05 (one-sided they reach 1/24)."""
    if len(a) != len(b):
        raise ValueError(f"Kendall's tau compares scorings of the same items (got {len(a)} and {len(b)})")
    if len(a) < 2:
        return math.nan, math.nan
    result = stats.kendalltau(a, b, alternative=alternative)
    return float(result.statistic), float(result.pvalue)
