"""What a test could have detected: minimum detectable effects (MDE) at ``alpha`` and 80% power, and the seeds a
test needs to detect a given effect.

The MDE of a t test is solved exactly from the noncentral t distribution; that of a one-sided F test on a ratio of
spreads is closed form; Kendall's tau's is the smallest tau the exact one-sided test calls significant over n rows.
A sign-flip permutation test over n seeds cannot reach ``alpha`` while 2^-n >= alpha, so its MDE is then infinite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import optimize, stats

POWER = 0.8
MAX_SEEDS = 1000


def t_mde(sd: float, n_effective: float, df: float, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest true effect a one-sided t test detects with ``power``: solves
    P(T' > t_{1-alpha, df}) = power for T' noncentral t with noncentrality effect / (sd / sqrt(n_effective)).

    ``sd / sqrt(n_effective)`` is the standard error of the estimate (paired: sd of differences over sqrt(n)).
    NaN when the spread is unknown; 0 when there is no spread at all.
    """
    if not (df > 0) or math.isnan(sd) or n_effective <= 0:
        return math.nan
    if sd == 0:
        return 0.0
    critical = stats.t.ppf(1 - alpha, df)

    def shortfall(noncentrality: float) -> float:
        return float(stats.nct.sf(critical, df, noncentrality)) - power

    upper = critical + 10.0
    noncentrality = optimize.brentq(shortfall, 0.0, upper)
    return noncentrality * sd / math.sqrt(n_effective)


def paired_mde(differences: Sequence[float], alpha: float = 0.05, power: float = POWER) -> float:
    """MDE of a paired comparison over ``len(differences)`` seeds at their observed spread. The sign-flip test's
    smallest p is 2^-n, so below the n where 2^-n < alpha no effect is detectable (inf)."""
    n = len(differences)
    if n < 2 or 0.5 ** n >= alpha:
        return math.inf
    return t_mde(float(np.std(differences, ddof=1)), n, n - 1, alpha, power)


def welch_df(sd_a: float, n_a: int, sd_b: float, n_b: int) -> float:
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    if va + vb == 0:
        return float(n_a + n_b - 2)
    return (va + vb) ** 2 / ((va ** 2 / (n_a - 1) if n_a > 1 else 0) + (vb ** 2 / (n_b - 1) if n_b > 1 else 0))


def welch_mde(a: Sequence[float], b: Sequence[float], alpha: float = 0.05, power: float = POWER) -> float:
    """MDE of a one-sided Welch test between samples of these sizes and spreads."""
    if len(a) < 2 or len(b) < 2:
        return math.inf
    sd_a, sd_b = float(np.std(a, ddof=1)), float(np.std(b, ddof=1))
    se = math.sqrt(sd_a ** 2 / len(a) + sd_b ** 2 / len(b))
    return t_mde(se, 1.0, welch_df(sd_a, len(a), sd_b, len(b)), alpha, power)


def seeds_needed(mde_at: Callable[[int], float], target: float | None, start: int = 2) -> int | None:
    """The smallest number of seeds whose MDE (``mde_at(n)``) is at or below ``|target|``; None when there is no
    target or no spread to scale, ``MAX_SEEDS + 1`` meaning more than ``MAX_SEEDS``."""
    if target is None or math.isnan(target) or target == 0:
        return None
    first = mde_at(start)
    if math.isnan(first):
        return None
    for n in range(start, MAX_SEEDS + 1):
        value = mde_at(n)
        if value <= abs(target):
            return n
    return MAX_SEEDS + 1


def paired_seeds_needed(sd: float, target: float | None, alpha: float = 0.05) -> int | None:
    def mde_at(n: int) -> float:
        return math.inf if 0.5 ** n >= alpha else t_mde(sd, n, n - 1, alpha)

    return None if sd == 0 else seeds_needed(mde_at, target)


def welch_seeds_needed(sd_a: float, sd_b: float, target: float | None, alpha: float = 0.05) -> int | None:
    """Seeds per side for a Welch test at these spreads to detect ``target``."""
    if sd_a == 0 and sd_b == 0:
        return None

    def mde_at(n: int) -> float:
        se = math.sqrt((sd_a ** 2 + sd_b ** 2) / n)
        return t_mde(se, 1.0, welch_df(sd_a, n, sd_b, n), alpha)

    return seeds_needed(mde_at, target)


def variance_ratio_mde(n_larger: int, n_smaller: int, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest true sd ratio that a one-sided F test detects with ``power`` (closed form:
    ratio^2 = F_{1-alpha} / F_{1-power})."""
    if n_larger < 2 or n_smaller < 2:
        return math.inf
    df_l, df_s = n_larger - 1, n_smaller - 1
    return math.sqrt(stats.f.ppf(1 - alpha, df_l, df_s) / stats.f.ppf(1 - power, df_l, df_s))


def kendall_critical_tau(n: int, alpha: float = 0.05) -> float:
    """The smallest tau whose exact one-sided p is below alpha over n untied rows; inf when even tau = 1 is not
    (3 rows give p = 1/6, 4 rows 1/24)."""
    pairs = n * (n - 1) // 2
    smallest = math.inf
    for discordant in range(pairs + 1):
        order = _permutation_with_inversions(n, discordant)
        p = stats.kendalltau(list(range(n)), order, alternative="greater", method="exact").pvalue
        if not p < alpha:
            break
        smallest = 1 - 2 * discordant / pairs
    return smallest


def _permutation_with_inversions(n: int, inversions: int) -> list[int]:
    remaining, items, order = inversions, list(range(n)), []
    for position in range(n):
        left = n - position - 1
        take = min(remaining, left)
        # Taking the element `take` places in moves it ahead of `take` smaller ones.
        order.append(items.pop(take))
        remaining -= take
    return order
