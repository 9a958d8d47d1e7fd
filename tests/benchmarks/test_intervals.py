"""The ratio interval against a hand computation, and the three verdicts."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from benchmarks.intervals import (
    RatioInterval,
    builds_anova_p,
    over_builds,
    pair_ratios,
    ratio_interval,
    verdict,
)


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


def test_trimmed_interval_is_tukey_mclaughlin_by_hand_and_ignores_one_stalled_block():
    from benchmarks.intervals import trimmed_ratio_interval

    ratios = [1.00, 1.02, 0.99, 1.01, 0.98, 1.03, 1.00, 0.70, 1.01, 0.99]  # one stalled block: 0.70
    g = 2  # 20% of 10 cut from each end
    kept = sorted(ratios)[g:-g]
    mean = sum(kept) / len(kept)
    ordered = sorted(ratios)
    winsorized = [ordered[g]] * g + ordered[g:-g] + [ordered[-g - 1]] * g
    w_mean = sum(winsorized) / 10
    s_w = math.sqrt(sum((x - w_mean) ** 2 for x in winsorized) / 9)
    half = stats.t.ppf(0.975, 10 - 2 * g - 1) * s_w / ((1 - 2 * 0.2) * math.sqrt(10))
    interval = trimmed_ratio_interval(ratios, 0.2)
    assert interval.mean == pytest.approx(mean) and interval.n == 10
    assert (interval.low, interval.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert interval.low > 0.98 > ratio_interval(ratios).low  # the plain mean's interval is dragged down by 0.70
    with pytest.raises(ValueError, match="use a fraction"):
        trimmed_ratio_interval(ratios, 0.5)


def test_over_builds_is_the_t_interval_of_the_build_means_and_one_build_falls_back_to_its_pairs():
    per_build = [[1.0, 1.2], [0.9, 0.95, 1.0], [1.1]]
    means = [1.1, 0.95, 1.1]
    sd = statistics.stdev(means)
    interval = over_builds(per_build)
    assert interval.n == 3 and interval.mean == pytest.approx(sum(means) / 3)
    assert interval.high - interval.mean == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-5)
    assert over_builds([[1.0, 1.2]]) == ratio_interval([1.0, 1.2])


def test_builds_anova_p_is_scipys_and_undefined_below_two_pairs_per_build():
    per_build = [[1.0, 1.1, 1.05], [1.3, 1.25, 1.35]]
    assert builds_anova_p(per_build) == pytest.approx(stats.f_oneway(*per_build).pvalue)
    assert builds_anova_p(per_build) < 0.01  # builds 0.25 apart, pairs within 0.05 of their build
    assert builds_anova_p([[1.0, 1.1]]) is None and builds_anova_p([[1.0], [1.1, 1.2]]) is None
