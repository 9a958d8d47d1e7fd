"""The tests behind the Revisiting study's figure findings, each with what it could detect.

* Figure 3, "prefix reaches an upper bound close to full fine-tuning's": a permutation test of the difference of
  maxima under a shift model (:func:`max_gap_p`), with its MDE by simulation (:func:`max_gap_mde`).
* Figure 5, "fewer trainable parameters -> lower spread": a stratified Jonckheere-type trend test of the absolute
  deviations from each cell's median against the parameter scale (:func:`spread_trend`).
* Iterations, "1k examples for as many steps as 2k spread like 2k": an equivalence (two one-sided F tests) of two
  standard deviations within a stated factor (:func:`sd_equivalence`).

Every permutation draw is seeded, so a report regenerates byte for byte.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, stats

from pet_lightning.reports.power import POWER, seeds_needed

# Past this many splits of the pooled seeds the permutation distribution is sampled rather than enumerated.
EXACT_SPLITS_MAX = 20_000
SAMPLED_SPLITS = 9_999
# The MDE simulation: draws per candidate effect and splits per draw (kept small: it runs for every task).
SIMULATIONS, SIMULATION_SPLITS = 300, 400
MAX_SIMULATED_SEEDS = 64


# ----------------------------------------------------------------------------------------------------------------
# Figure 3: the difference of two maxima


def _splits(n_a: int, n_b: int, exact_max: int, sampled: int, seed: int = 0) -> np.ndarray:
    """Boolean rows marking which of the pooled ``n_a + n_b`` values go to side A: every split when there are at
    most ``exact_max``, else the observed split plus ``sampled`` random ones."""
    n = n_a + n_b
    if math.comb(n, n_a) <= exact_max:
        rows = np.zeros((math.comb(n, n_a), n), dtype=bool)
        for i, chosen in enumerate(itertools.combinations(range(n), n_a)):
            rows[i, list(chosen)] = True
        return rows
    rng = np.random.default_rng(seed)
    rows = np.zeros((sampled + 1, n), dtype=bool)
    rows[0, :n_a] = True
    for i in range(1, sampled + 1):
        rows[i, rng.permutation(n)[:n_a]] = True
    return rows


def _max_gaps(pooled: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """max(A) - max(B) for every split (rows of ``splits``) of every row of ``pooled`` (shape draws x n)."""
    values = pooled[:, None, :]
    top_a = np.where(splits[None], values, -np.inf).max(axis=-1)
    top_b = np.where(~splits[None], values, -np.inf).max(axis=-1)
    return top_a - top_b


def max_gap_p(ours: Sequence[float], reference: Sequence[float], margin: float) -> tuple[float, float]:
    """One-sided permutation p values that max(ours) reaches within ``margin`` of max(reference) (claim) and that
    it falls more than ``margin`` below it (opposite). Null model: ``ours`` is ``reference`` shifted down by
    ``margin``, so ``ours + margin`` and ``reference`` are exchangeable and every split of the pooled values is as
    likely; the statistic is max(ours + margin) - max(reference)."""
    a, b = np.asarray(ours, dtype=float) + margin, np.asarray(reference, dtype=float)
    if len(a) < 1 or len(b) < 1:
        return math.nan, math.nan
    pooled = np.concatenate([a, b])[None, :]
    splits = _splits(len(a), len(b), EXACT_SPLITS_MAX, SAMPLED_SPLITS)
    gaps = _max_gaps(pooled, splits)[0]
    observed = float(a.max() - b.max())
    tolerance = 1e-9 * max(1.0, abs(observed))  # equal maxima from equal scores must count as ties
    return float(np.mean(gaps >= observed - tolerance)), float(np.mean(gaps <= observed + tolerance))


@lru_cache(maxsize=256)
def _standard_max_gap_mde(n_a: int, n_b: int, alpha: float) -> float:
    """The MDE of :func:`max_gap_p` in units of the scores' sd: the smallest shift of normal scores it detects
    with 80% power (seeded simulation); inf when no split can reach ``alpha``."""
    if n_a < 1 or n_b < 1 or 1 / math.comb(n_a + n_b, n_a) >= alpha:
        return math.inf
    splits = _splits(n_a, n_b, SIMULATION_SPLITS, SIMULATION_SPLITS - 1, seed=1)
    noise = np.random.default_rng(2).standard_normal((SIMULATIONS, n_a + n_b))

    def power(shift: float) -> float:
        pooled = noise.copy()
        pooled[:, :n_a] += shift
        gaps = _max_gaps(pooled, splits)
        observed = pooled[:, :n_a].max(axis=1) - pooled[:, n_a:].max(axis=1)
        p = np.mean(gaps >= observed[:, None] - 1e-12, axis=1)
        return float(np.mean(p < alpha))

    upper = 1.0
    while power(upper) < POWER:
        upper *= 2
        if upper > 1e3:
            return math.inf
    return float(optimize.brentq(lambda shift: power(shift) - POWER, 0.0, upper, xtol=1e-3))


def pooled_sd(*samples: Sequence[float]) -> float:
    """The root of the mean within-sample variance (ddof 1); NaN when a sample has fewer than 2 values."""
    if any(len(sample) < 2 for sample in samples):
        return math.nan
    return math.sqrt(float(np.mean([np.var(sample, ddof=1) for sample in samples])))


def max_gap_mde(n_a: int, n_b: int, sd: float, alpha: float = 0.05) -> float:
    """Points: the smallest margin above "``margin`` behind" that :func:`max_gap_p` detects with 80% power, for
    normal scores of spread ``sd`` (the two methods' pooled sd)."""
    if math.isnan(sd):
        return math.nan
    standard = _standard_max_gap_mde(n_a, n_b, alpha)
    return standard if math.isinf(standard) else standard * sd


def max_gap_seeds_needed(sd: float, target: float | None, alpha: float = 0.05) -> int | None:
    """Seeds per method for :func:`max_gap_p` to detect ``target`` (points) with 80% power at spread ``sd``;
    None without a target or spread, or beyond ``MAX_SIMULATED_SEEDS`` (the search stops there)."""
    if target is None or math.isnan(sd) or sd == 0 or target <= 0:
        return None
    low, high = 2, MAX_SIMULATED_SEEDS
    if max_gap_mde(high, high, sd, alpha) > target:
        return None
    while low < high:  # the MDE falls with the seeds: a bisection over n
        middle = (low + high) // 2
        if max_gap_mde(middle, middle, sd, alpha) <= target:
            high = middle
        else:
            low = middle + 1
    return low


def expected_normal_max(n: int) -> float:
    """E[max of n standard normals] (numerical integration): the upper bound's growth with the seeds."""
    if n < 1:
        return math.nan

    def density(x: float) -> float:
        return x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1)

    from scipy import integrate

    return float(integrate.quad(density, -12, 12)[0])


# ----------------------------------------------------------------------------------------------------------------
# Figure 5: a stratified trend of the spread


@dataclass(frozen=True)
class Trend:
    """A stratified trend test: ``tau`` = (concordant - discordant) / comparable pairs of (scale, |deviation|)
    across strata; one-sided p values up and down; ``critical`` the smallest tau significant at alpha."""

    tau: float
    p: float
    p_opposite: float
    critical: float
    runs: int
    strata: int


def spread_trend(strata: Sequence[Sequence[Sequence[float]]], alpha: float = 0.05, draws: int = SAMPLED_SPLITS,
                 seed: int = 0) -> Trend:
    """Claim: the spread over seeds grows along each stratum's groups (ordered by parameter scale, smallest
    first). Each value becomes its absolute deviation from its group's median (Brown-Forsythe), so groups of
    different means compare by spread only; the statistic counts, within each stratum, the pairs of runs from a
    smaller and a larger scale whose deviations rise (+1) or fall (-1) (Jonckheere-Terpstra). Under the null the
    deviations are exchangeable within a stratum: they are permuted there (seeded), and p counts the observed
    arrangement among the draws."""
    rng = np.random.default_rng(seed)
    deviations, pairs = [], []
    for groups in strata:
        values = [np.abs(np.asarray(g, dtype=float) - np.median(g)) for g in groups]
        flat = np.concatenate(values)
        labels = np.concatenate([np.full(len(v), i) for i, v in enumerate(values)])
        first, second = np.nonzero(labels[:, None] < labels[None, :])
        deviations.append(flat)
        pairs.append((first, second))
    total_pairs = sum(len(first) for first, _second in pairs)
    if total_pairs == 0:
        return Trend(math.nan, math.nan, math.nan, math.inf, 0, 0)
    null = np.zeros(draws + 1)
    for flat, (first, second) in zip(deviations, pairs):
        arranged = np.vstack([flat, np.array([rng.permutation(flat) for _ in range(draws)]).reshape(draws, -1)])
        null += np.sign(arranged[:, second] - arranged[:, first]).sum(axis=1)
    null /= total_pairs
    observed = null[0]
    p_up = float(np.mean(null >= observed - 1e-12))
    p_down = float(np.mean(null <= observed + 1e-12))
    # The smallest tau that the draws call significant: the (1 - alpha) point of the null, strictly above it.
    ordered = np.sort(null)
    significant = [t for t in np.unique(ordered) if np.mean(null >= t - 1e-12) < alpha]
    critical = float(significant[0]) if significant else math.inf
    return Trend(float(observed), p_up, p_down, critical, int(sum(len(f) for f in deviations)), len(strata))


# ----------------------------------------------------------------------------------------------------------------
# Iterations: two standard deviations within a factor


@dataclass(frozen=True)
class Equivalence:
    """sd(a) / sd(b) against the bound [1 / ``bound``, ``bound``]: the TOST p (both within), the p that the
    ratio lies outside (the smaller one-sided p beyond a bound, doubled for the two sides), the 90% interval of
    the ratio, the margin inside the bound on the log scale (log bound - |log ratio|), and its MDE."""

    ratio: float
    low: float
    high: float
    p: float
    p_opposite: float
    margin: float
    mde: float
    seeds_needed: int | None


def _equivalence_power(true_ratio: float, df_a: int, df_b: int, bound: float, alpha: float) -> float:
    """P(both one-sided F tests reject) when the true sd ratio is ``true_ratio``: the observed variance ratio is
    true_ratio^2 times an F(df_a, df_b) draw, and TOST rejects when it lies in
    (F_{1-alpha} / bound^2, bound^2 F_alpha)."""
    low = stats.f.ppf(1 - alpha, df_a, df_b) / bound ** 2 / true_ratio ** 2
    high = bound ** 2 * stats.f.ppf(alpha, df_a, df_b) / true_ratio ** 2
    return 0.0 if high <= low else float(stats.f.cdf(high, df_a, df_b) - stats.f.cdf(low, df_a, df_b))


def equivalence_mde(n_a: int, n_b: int, bound: float, alpha: float = 0.05) -> float:
    """The smallest margin (log bound - |log true ratio|) that TOST detects with 80% power; inf when even equal
    spreads (the largest margin, log bound) are detected less often."""
    if n_a < 2 or n_b < 2:
        return math.inf
    df_a, df_b = n_a - 1, n_b - 1
    if _equivalence_power(1.0, df_a, df_b, bound, alpha) < POWER:
        return math.inf
    # Power falls as the true ratio moves from 1 towards the bound: find where it crosses 80%.
    ratio = optimize.brentq(lambda r: _equivalence_power(r, df_a, df_b, bound, alpha) - POWER, 1.0, bound)
    return math.log(bound) - math.log(ratio)


def sd_equivalence(a: Sequence[float], b: Sequence[float], bound: float, alpha: float = 0.05) -> Equivalence:
    """Are sd(a) and sd(b) within a factor ``bound`` of each other? Two one-sided F tests (normal scores)."""
    n_a, n_b = len(a), len(b)
    if n_a < 2 or n_b < 2:
        return Equivalence(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.inf, None)
    var_a, var_b = float(np.var(a, ddof=1)), float(np.var(b, ddof=1))
    df_a, df_b = n_a - 1, n_b - 1
    mde = equivalence_mde(n_a, n_b, bound, alpha)

    def mde_at(n: int) -> float:
        return equivalence_mde(n, n, bound, alpha)

    needed = seeds_needed(mde_at, math.log(bound))
    if var_a == 0 or var_b == 0:
        # A ratio with a zero spread is 0 or inf: outside any bound, but from quantisation, not from a spread.
        both = var_a == var_b
        return Equivalence(1.0 if both else math.nan, math.nan, math.nan, 1.0, 1.0,
                           math.log(bound) if both else math.nan, mde, needed)
    observed = var_a / var_b
    below = float(stats.f.cdf(observed / bound ** 2, df_a, df_b))  # H0 ratio >= bound
    above = float(stats.f.sf(observed * bound ** 2, df_a, df_b))  # H0 ratio <= 1 / bound
    beyond_high = float(stats.f.sf(observed / bound ** 2, df_a, df_b))
    beyond_low = float(stats.f.cdf(observed * bound ** 2, df_a, df_b))
    low = math.sqrt(observed / stats.f.ppf(1 - alpha, df_a, df_b))
    high = math.sqrt(observed / stats.f.ppf(alpha, df_a, df_b))
    ratio = math.sqrt(observed)
    return Equivalence(ratio, low, high, max(below, above), min(1.0, 2 * min(beyond_high, beyond_low)),
                       math.log(bound) - abs(math.log(ratio)), mde, needed)
