"""The ratio interval against a hand computation, and the three verdicts."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from benchmarks.intervals import RatioInterval, over_builds, pair_ratios, ratio_interval, verdict


def test_interval_is_the_t_interval_of_the_per_pair_ratios():
    ratios = [1.00, 1.10, 0.90, 1.05]
    mean = sum(ratios) / 4  # 1.0125
    sd = math.sqrt(sum((r - mean) ** 2 for r in ratios) / 3)
    half = stats.t.ppf(0.975, 3) * sd / math.sqrt(4)  # t(0.975, 3) = 3.182
    interval = ratio_interval(ratios)
    assert interval.n == 4
    assert interval.mean == pytest.approx(1.0125)
    assert (interval.low, interval.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert half == pytest.approx(0.1359, abs=1e-4)  # 3.1824 * 0.08539 / 2
    assert interval.half_width == pytest.approx(half / mean)
    assert str(interval) == f"1.012x [{mean - half:.3f}, {mean + half:.3f}]"


def test_one_pair_has_no_interval_and_decides_nothing():
    interval = ratio_interval([1.3])
    assert interval.low == -math.inf and interval.high == math.inf
    assert verdict(interval, 1.0) == "unresolved"
    assert "n/a" in str(interval)
    with pytest.raises(ValueError):
        ratio_interval([])


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(1.01, 1.05, "PASS"), (1.00, 1.05, "PASS"), (0.90, 0.99, "SHORT"), (0.98, 1.02, "unresolved")],
)
def test_verdict_needs_the_whole_interval_on_one_side(low, high, expected):
    assert verdict(RatioInterval((low + high) / 2, low, high, 5), 1.0) == expected


def test_pair_ratios_are_the_other_sides_time_over_ours():
    assert pair_ratios([1.0, 2.0], [1.1, 1.0]) == [pytest.approx(1.1), pytest.approx(0.5)]
    with pytest.raises(ValueError):
        pair_ratios([1.0], [1.0, 2.0])


def test_over_builds_is_the_t_interval_of_the_build_means_and_one_build_falls_back_to_its_pairs():
    per_build = [[1.0, 1.2], [0.9, 0.95, 1.0], [1.1]]
    means = [1.1, 0.95, 1.1]
    sd = statistics.stdev(means)
    interval = over_builds(per_build)
    assert interval.n == 3 and interval.mean == pytest.approx(sum(means) / 3)
    assert interval.high - interval.mean == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-5)
    assert over_builds([[1.0, 1.2]]) == ratio_interval([1.0, 1.2])
