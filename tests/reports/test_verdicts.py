"""The verdict rules on hand-made numbers: one case per verdict, exact p values, MDEs against simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pet_lightning.reports import power
from pet_lightning.reports import verdicts as v


def test_sign_flip_p_is_two_to_the_minus_n_for_equal_differences():
    # A t test on equal non-zero differences has no spread and gives p = 0; the exact sign-flip p is 2^-n.
    assert v.sign_flip_p([0.23, 0.23, 0.23])[0] == pytest.approx(1 / 8)
    assert v.sign_flip_p([0.23] * 5) == pytest.approx((1 / 32, 1.0))


def test_sign_flip_p_counts_sign_patterns_by_hand():
    differences = [3.0, 1.0, -0.5, 2.0]
    observed = np.mean(differences)
    patterns = np.array(np.meshgrid(*[[1, -1]] * 4)).T.reshape(-1, 4)
    means = (patterns * np.array(differences)).mean(axis=1)
    expected = float(np.mean(means >= observed - 1e-12))
    assert v.sign_flip_p(differences)[0] == pytest.approx(expected)
    assert v.sign_flip_p(differences)[1] == pytest.approx(float(np.mean(means <= observed + 1e-12)))


def test_one_seed_has_two_sign_patterns_and_a_finding_from_it_is_never_decided():
    # A report on a study's first finished seeds: d and -d are the only patterns.
    assert v.sign_flip_p([0.4]) == (0.5, 1.0) and v.sign_flip_p([-0.4]) == (1.0, 0.5)
    finding = v.paired_finding("one seed", [0.7], [0.3], paper_effect=1.0)
    assert finding.n == 1 and finding.p == 0.5 and finding.verdict == v.UNDERPOWERED


def test_kendall_one_sided_over_four_rows_reaches_one_in_24():
    tau, p, p_opposite = v.kendall_p([1, 2, 3, 4], [10, 20, 30, 40])
    assert tau == 1.0
    assert p == pytest.approx(1 / 24)
    assert p_opposite == pytest.approx(1.0)
    assert power.kendall_critical_tau(3) == math.inf  # 1/6 at best
    assert power.kendall_critical_tau(4) == 1.0


def test_paired_mde_matches_closed_form_and_simulation():
    # Closed form check: the review's 2.30 sd (n = 3) and 1.36 sd (n = 5) for a one-sided paired t test.
    assert power.t_mde(1.0, 3, 2) == pytest.approx(2.297, abs=0.01)
    assert power.t_mde(1.0, 5, 4) == pytest.approx(1.359, abs=0.01)
    # Simulation: a true effect of the MDE is detected 80% of the time.
    rng = np.random.default_rng(0)
    n, sd = 6, 2.0
    effect = power.t_mde(sd, n, n - 1)
    draws = rng.normal(effect, sd, size=(20_000, n))
    p = stats.ttest_1samp(draws, 0.0, axis=1, alternative="greater").pvalue
    assert float(np.mean(p < 0.05)) == pytest.approx(0.8, abs=0.015)


def test_variance_ratio_mde_matches_simulation():
    rng = np.random.default_rng(1)
    n = 8
    ratio = power.variance_ratio_mde(n, n)
    larger = rng.normal(0, ratio, size=(20_000, n)).var(axis=1, ddof=1)
    smaller = rng.normal(0, 1, size=(20_000, n)).var(axis=1, ddof=1)
    p = stats.f.sf(larger / smaller, n - 1, n - 1)
    assert float(np.mean(p < 0.05)) == pytest.approx(0.8, abs=0.015)


def test_paired_mde_is_infinite_where_sign_flip_cannot_reach_alpha():
    assert power.paired_mde([1.0, 2.0, 1.5, 0.5]) == math.inf  # 2^-4 = 0.0625 > 0.05
    assert math.isfinite(power.paired_mde([1.0, 2.0, 1.5, 0.5, 1.0]))


def test_one_case_per_verdict():
    reference = [70.0, 71.0, 69.0, 70.5, 70.0]
    better = [73.0, 74.5, 72.0, 73.0, 73.5]
    worse = [66.0, 68.0, 65.0, 67.0, 66.0]
    # reproduces: significant in the paper's direction.
    assert v.paired_finding("better", better, reference, 1.0).verdict == v.REPRODUCES
    # contradicted: significant the other way.
    assert v.paired_finding("better", worse, reference, 1.0).verdict == v.CONTRADICTED
    # inconclusive: tight seeds could detect a 5-point effect and did not see one.
    tight = [70.1, 71.0, 68.9, 70.6, 70.0]
    finding = v.paired_finding("better", tight, reference, 5.0)
    assert finding.mde < 5.0 and finding.verdict == v.INCONCLUSIVE
    # underpowered: noisy seeds cannot detect the paper's 1 point.
    noisy = [75.0, 64.0, 72.0, 66.0, 71.0]
    finding = v.paired_finding("better", noisy, reference, 1.0)
    assert finding.mde > 1.0 and finding.verdict == v.UNDERPOWERED
    assert finding.seeds_needed is not None and finding.seeds_needed > 5


def test_inconclusive_states_the_direction_seen():
    reference = [70.0, 71.0, 69.0, 70.5, 70.0]
    finding = v.paired_finding("better", [69.9, 71.0, 69.0, 70.4, 70.0], reference, 5.0)
    assert finding.verdict == v.INCONCLUSIVE
    assert finding.verdict_text == "inconclusive (opposite direction)"


def test_welch_without_spread_compares_means_exactly():
    assert v.welch_p([2.0, 2.0], [1.0, 1.0]) == (0.0, 1.0)
    assert v.welch_p([1.0, 1.0], [1.0, 1.0]) == (1.0, 1.0)
    finding = v.welch_finding("higher", [2.0, 2.0, 2.0], [1.0, 1.0, 1.0], 0.5)
    assert finding.verdict == v.REPRODUCES and finding.mde == 0.0


def test_holm_by_hand():
    assert v.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert math.isnan(v.holm([math.nan, 0.02])[0]) and v.holm([math.nan, 0.02])[1] == pytest.approx(0.02)


def test_union_claim_is_holm_adjusted():
    reference = [70.0, 71.0, 69.0, 70.5, 70.0]
    # One member at p = 1/32 = 0.031 alone, four members: Holm makes it 0.125, no longer significant.
    members = [v.paired_finding(f"m{i}", [x + 0.5 for x in reference], reference, 0.4) for i in range(1)]
    members += [v.paired_finding(f"n{i}", [x - 0.1 * ((-1) ** k) for k, x in enumerate(reference)], reference, 0.4)
                for i in range(3)]
    assert members[0].verdict == v.REPRODUCES
    union = v.any_of("some method is better", members)
    assert union.p == pytest.approx(4 / 32)
    assert union.p_raw == pytest.approx(1 / 32)
    assert union.verdict != v.REPRODUCES


def test_intersection_claim_needs_every_member():
    reference = [70.0, 71.0, 69.0, 70.5, 70.0]
    yes = v.paired_finding("a", [x + 3 for x in reference], reference, 1.0)
    no = v.paired_finding("b", [x - 3 for x in reference], reference, 1.0)
    assert v.all_of("both", [yes, yes]).verdict == v.REPRODUCES
    assert v.all_of("both", [yes, no]).verdict == v.CONTRADICTED


def test_kendall_finding_over_three_rows_is_underpowered_by_design():
    finding = v.kendall_finding("order", [1, 2, 3], [1, 2, 3])
    assert finding.verdict == v.UNDERPOWERED and math.isinf(finding.mde)
    assert v.kendall_finding("order", [1, 2, 3, 4], [1, 2, 3, 4]).verdict == v.REPRODUCES


def test_variance_finding():
    rng = np.random.default_rng(3)
    wide, narrow = list(rng.normal(0, 5, 20)), list(rng.normal(0, 1, 20))
    assert v.variance_finding("wider", wide, narrow, 2.0).verdict == v.REPRODUCES
    assert v.variance_finding("wider", narrow, wide, 2.0).verdict == v.CONTRADICTED
    few = v.variance_finding("wider", [1.0, 2.0, 1.5], [1.0, 1.2, 1.1], 1.2)
    assert few.verdict in (v.UNDERPOWERED, v.REPRODUCES)
    assert few.mde > 0.2


def test_cohen_kappa_by_hand():
    ours = ["up", "same", "down", "down"]
    theirs = ["up", "down", "down", "down"]
    # p_o = 3/4; p_e = (1/4*1/4) + (0*1/4) + (2/4*3/4)... computed from the marginals.
    po = 0.75
    pe = (1 / 4) * (1 / 4) + (1 / 4) * 0 + (2 / 4) * (3 / 4)
    assert v.cohen_kappa(ours, theirs) == pytest.approx((po - pe) / (1 - pe))


def test_bootstrap_over_examples_brackets_accuracy():
    labels = np.array([1, 0] * 50)
    predictions = labels.copy()
    predictions[:20] = 1 - predictions[:20]
    low, high = v.bootstrap_over_examples(lambda y, p: float(np.mean(y == p)), labels, predictions)
    assert low < 0.8 < high
    assert v.example_resolution(28) == pytest.approx(100 / 28)


def test_welch_treats_last_bit_differences_as_no_spread():
    scaled = [0.7 * 100, 0.7000000000000001 * 100]
    assert v.welch_p(scaled, [60.0, 60.0]) == (0.0, 1.0)
