"""The statistics of the reports: spreads over seeds and one-tailed Welch tests (scipy.stats)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

UP, DOWN = "↑", "↓"


def welch_t_test(a: Sequence[float], b: Sequence[float], alternative: str = "two-sided") -> tuple[float, float, float]:
    """Welch's unequal-variance t-test of mean_of(a) vs mean_of(b) (``scipy.stats.ttest_ind(equal_var=False)``):
    ``(t, degrees of freedom, p)``.

    ``alternative``: ``greater`` (mean_of(a) > mean_of(b)), ``less`` or ``two-sided``. Needs two or more values on each
    side; with no variance at all the test is undefined and every figure is NaN.
    """
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative={alternative!r}: use greater, less or two-sided")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"Welch's t-test needs at least 2 values per side (got {len(a)} and {len(b)}): run more seeds"
        )
    if std_of(a) == 0 and std_of(b) == 0:
        return math.nan, math.nan, math.nan
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


def significance(scores: Sequence[float], baseline: Sequence[float], alpha: float) -> tuple[str, float, float]:
    """``(mark, p_greater, p_less)``: ↑ / ↓ where the one-tailed Welch test has p < alpha, else ``""``."""
    if len(scores) < 2 or len(baseline) < 2:
        return "", math.nan, math.nan
    p_greater = welch_t_test(scores, baseline, "greater")[2]
    p_less = welch_t_test(scores, baseline, "less")[2]
    mark = UP if p_greater < alpha else DOWN if p_less < alpha else ""
    return mark, p_greater, p_less


def paired_t_test(a: Sequence[float], b: Sequence[float], alternative: str = "greater") -> tuple[float, float]:
    """Paired t-test of a vs b (the same seeds in the same order; ``scipy.stats.ttest_rel``): ``(t, p)``.

    NaN when fewer than two pairs or every difference is zero. When every difference is the same non-zero value
    (no spread), the evidence is as strong as it gets: t is +-inf and p is 0 or 1 for the alternative.
    """
    if len(a) != len(b):
        raise ValueError(f"a paired test needs as many values on each side (got {len(a)} and {len(b)})")
    differences = [x - y for x, y in zip(a, b)]
    if len(differences) < 2 or all(d == 0 for d in differences):
        return math.nan, math.nan
    if std_of(differences) == 0:
        sign = 1.0 if differences[0] > 0 else -1.0
        holds = {"greater": sign > 0, "less": sign < 0, "two-sided": True}[alternative]
        return sign * math.inf, 0.0 if holds else 1.0
    result = stats.ttest_rel(a, b, alternative=alternative)
    return float(result.statistic), float(result.pvalue)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Kendall's tau-b between two scorings of the same items (``scipy.stats.kendalltau``): ``(tau, p)``."""
    if len(a) != len(b):
        raise ValueError(f"Kendall's tau compares scorings of the same items (got {len(a)} and {len(b)})")
    if len(a) < 2:
        return math.nan, math.nan
    result = stats.kendalltau(a, b)
    return float(result.statistic), float(result.pvalue)
