"""A ratio with its 95% confidence interval, and the verdict of a target on it.

Each paired measurement (one A block and the B block beside it, or one end-to-end repeat of each side) gives one
ratio; the reported figure is their mean, with a t-based interval over them (``scipy.stats.t``, ``n - 1``
degrees of freedom). A target reads PASS only when the whole interval clears its threshold, SHORT when the whole
interval lies below it, and ``unresolved`` when the interval straddles it (more pairs would decide).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

CONFIDENCE = 0.95


@dataclass(frozen=True)
class RatioInterval:
    """Mean of per-pair ratios and its confidence interval (infinite with fewer than two pairs)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        """Half the interval's width, as a fraction of the mean (0.03: +-3%)."""
        return (self.high - self.low) / 2 / self.mean if self.mean else math.inf

    def __str__(self) -> str:
        if not math.isfinite(self.low):
            return f"{self.mean:.3f}x [n/a, {self.n} pair]"
        return f"{self.mean:.3f}x [{self.low:.3f}, {self.high:.3f}]"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "half_width": self.half_width}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> RatioInterval:
        """The interval back from :meth:`as_dict` (a figures JSON); the derived half width is recomputed."""
        return cls(saved["mean"], saved["low"], saved["high"], saved["n"], saved.get("confidence", CONFIDENCE))


def ratio_interval(ratios: list[float], confidence: float = CONFIDENCE) -> RatioInterval:
    """Mean of ``ratios`` with a t-based ``confidence`` interval: mean +- t(1 - a/2, n - 1) * s / sqrt(n)."""
    from scipy import stats

    if not ratios:
        raise ValueError("ratio_interval needs at least one ratio")
    n = len(ratios)
    mean = statistics.fmean(ratios)
    if n < 2:
        return RatioInterval(mean, -math.inf, math.inf, n, confidence)
    sem = statistics.stdev(ratios) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return RatioInterval(mean, mean - half, mean + half, n, confidence)


def over_builds(per_build: list[list[float]], confidence: float = CONFIDENCE) -> RatioInterval:
    """The interval over builds' mean ratios (``per_build[b]``: build ``b``'s per-pair ratios; ``n`` = builds), the
    one that holds where builds differ; with a single build, the interval over its pairs."""
    values = per_build[0] if len(per_build) == 1 else [statistics.fmean(build) for build in per_build]
    return ratio_interval(values, confidence)


def verdict(interval: RatioInterval, threshold: float) -> str:
    """PASS when the whole interval is at or above ``threshold``, SHORT when it is wholly below, else unresolved."""
    if interval.low >= threshold:
        return "PASS"
    if interval.high < threshold:
        return "SHORT"
    return "unresolved"


def pair_ratios(ours: list[float], other: list[float]) -> list[float]:
    """Speed of ours over the other side, per pair: the other side's time divided by ours (> 1: ours is faster)."""
    if len(ours) != len(other):
        raise ValueError(f"{len(ours)} blocks of ours against {len(other)} of the other side: pair them one to one")
    return [theirs / mine for mine, theirs in zip(ours, other)]
