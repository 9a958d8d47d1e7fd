"""Paired t-test and Kendall's tau wrappers against scipy, and their undefined cases."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from pet_lightning.reports.stats import kendall_tau, paired_t_test


def test_paired_t_test_is_scipys_ttest_rel():
    a, b = [80.0, 82.5, 79.0, 81.0], [78.0, 81.0, 78.5, 79.0]
    t, p = paired_t_test(a, b, "greater")
    expected = stats.ttest_rel(a, b, alternative="greater")
    assert (t, p) == pytest.approx((expected.statistic, expected.pvalue))
    assert paired_t_test(a, b, "less")[1] == pytest.approx(1 - p)


def test_paired_t_test_undefined_cases():
    assert all(math.isnan(v) for v in paired_t_test([1.0], [0.0]))
    assert all(math.isnan(v) for v in paired_t_test([2.0, 3.0], [2.0, 3.0]))  # no difference at all
    # Every difference is +1: no spread, the strongest evidence for "greater" and none for "less".
    assert paired_t_test([2.0, 3.0], [1.0, 2.0], "greater") == (math.inf, 0.0)
    assert paired_t_test([2.0, 3.0], [1.0, 2.0], "less") == (math.inf, 1.0)
    with pytest.raises(ValueError, match="as many values on each side"):
        paired_t_test([1.0, 2.0], [1.0])


def test_kendall_tau_is_scipys():
    ours, theirs = [74.0, 43.0, 43.5, 31.0], [89.0, 88.4, 88.2, 68.3]
    tau, p = kendall_tau(ours, theirs)
    expected = stats.kendalltau(ours, theirs)
    assert (tau, p) == pytest.approx((expected.statistic, expected.pvalue))
    assert all(math.isnan(v) for v in kendall_tau([1.0], [2.0]))
