"""Paired t-test, Kendall's tau, std intervals and the group combination against hand computations, and the one
zero-spread convention (review B2, B6, B10)."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from pet_lightning.reports.stats import (
    kendall_tau,
    paired_t_test,
    significance,
    std_interval,
    stouffer,
    welch_t_test,
)


def test_paired_t_test_is_scipys_ttest_rel():
    a, b = [80.0, 82.5, 79.0, 81.0], [78.0, 81.0, 78.5, 79.0]
    t, p = paired_t_test(a, b, "greater")
    expected = stats.ttest_rel(a, b, alternative="greater")
    assert (t, p) == pytest.approx((expected.statistic, expected.pvalue))
    assert paired_t_test(a, b, "less")[1] == pytest.approx(1 - p)


def test_equal_differences_give_the_exact_sign_flip_p_never_zero():
    # Two seeds that each gain one example (+1): a t test on no spread says p = 0; the exact test says 2^-2.
    assert paired_t_test([2.0, 3.0], [1.0, 2.0], "greater") == (math.inf, 0.25)
    assert paired_t_test([2.0, 3.0], [1.0, 2.0], "less") == (math.inf, 1.0)
    assert paired_t_test([2.0, 3.0], [1.0, 2.0], "two-sided") == (math.inf, 0.5)
    five = paired_t_test([1.0, 2.0, 3.0, 4.0, 5.0], [1.5, 2.5, 3.5, 4.5, 5.5], "less")
    assert five == (-math.inf, pytest.approx(1 / 32))


def test_paired_t_test_undefined_cases():
    assert all(math.isnan(v) for v in paired_t_test([1.0], [0.0]))
    t, p = paired_t_test([2.0, 3.0], [2.0, 3.0])  # no difference at all: no evidence either way
    assert math.isnan(t) and p == 1.0
    with pytest.raises(ValueError, match="as many values on each side"):
        paired_t_test([1.0, 2.0], [1.0])


def test_kendall_tau_is_one_sided_by_default():
    ours, theirs = [74.0, 43.0, 43.5, 31.0], [89.0, 88.4, 88.2, 68.3]
    tau, p = kendall_tau(ours, theirs)
    expected = stats.kendalltau(ours, theirs, alternative="greater")
    assert (tau, p) == pytest.approx((expected.statistic, expected.pvalue))
    # Four rows in the same order: one of the 24 orders, p = 1/24 one-sided (two-sided would be 1/12).
    assert kendall_tau([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]) == pytest.approx((1.0, 1 / 24))
    assert all(math.isnan(v) for v in kendall_tau([1.0], [2.0]))


def test_std_interval_at_five_seeds():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    low, high = std_interval(values)
    s = statistics.stdev(values)
    # The review's factors at n = 5: [0.60 s, 2.87 s].
    assert low / s == pytest.approx(0.599, abs=1e-3) and high / s == pytest.approx(2.874, abs=1e-3)


def test_stouffer_weights_every_task_equally():
    # z = (1.6449 + 0) / sqrt(2) = 1.1631: p = 0.1224, whatever the tasks' scales.
    p_greater, p_less = stouffer([0.05, 0.5])
    assert p_greater == pytest.approx(stats.norm.sf(stats.norm.isf(0.05) / math.sqrt(2)))
    assert p_greater == pytest.approx(0.1224, abs=1e-4) and p_less == pytest.approx(1 - p_greater)
    # A constant, distinct task (p = 0) counts as strong, not infinite, evidence.
    assert 0 < stouffer([0.0, 0.9])[0] < 1e-3


def test_one_zero_spread_convention():
    # Both sides constant: equal means are no evidence; distinct means are decided exactly.
    assert welch_t_test([1.0, 1.0], [1.0, 1.0], "greater")[2] == 1.0
    assert welch_t_test([2.0, 2.0], [1.0, 1.0], "greater")[2] == 0.0
    assert welch_t_test([2.0, 2.0], [1.0, 1.0], "less")[2] == 1.0
    assert significance([2.0, 2.0], [1.0, 1.0], 0.05) == ("↑", 0.0, 1.0)
    assert significance([1.0, 1.0], [1.0, 1.0], 0.05) == ("", 1.0, 1.0)
