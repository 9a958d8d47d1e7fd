"""Fresh builds of one A/B cell: the ANOVA over builds separates a shift between builds from block noise."""

from __future__ import annotations

import random

import pytest

from benchmarks import build_variance
from benchmarks.intervals import ratio_interval


def _noise(seed: int, n: int, centre: float) -> list[float]:
    rng = random.Random(seed)
    return [centre + rng.gauss(0, 0.02) for _ in range(n)]


def test_builds_of_one_distribution_do_not_differ_and_shifted_ones_do():
    same = build_variance.between_builds([_noise(0, 12, 1.0), _noise(1, 12, 1.0), _noise(2, 12, 1.0)])
    shifted = build_variance.between_builds([_noise(0, 12, 1.0), _noise(1, 12, 1.06), _noise(2, 12, 0.97)])
    assert same["p"] > 0.05 and shifted["p"] < 0.001
    assert shifted["spread_of_build_means"] == pytest.approx(
        max(b["mean"] for b in shifted["builds"]) - min(b["mean"] for b in shifted["builds"]))


def test_the_pooled_interval_is_the_interval_over_every_pair():
    builds = [_noise(3, 6, 1.0), _noise(4, 6, 1.02)]
    pooled = build_variance.between_builds(builds)["pooled"]
    expected = ratio_interval(builds[0] + builds[1])
    assert (pooled["mean"], pooled["low"], pooled["high"], pooled["n"]) == (
        expected.mean, expected.low, expected.high, 12)


def test_fewer_than_two_builds_is_refused():
    with pytest.raises(ValueError, match="at least two builds"):
        build_variance.between_builds([[1.0, 1.1]])


def test_two_builds_of_a_tiny_backbone_run_end_to_end(tiny_backbone, tmp_path):
    out = tmp_path / "builds.json"
    figures = build_variance.main(["--method", "lora", "--builds", "2", "--blocks", "3", "--backbone", tiny_backbone,
                                   "--json", str(out)])
    assert out.exists() and len(figures["step_s"]) == 2
    assert all(len(times) == 3 for s in figures["step_s"] for times in s.values())
    assert set(figures["comparisons"]) == {"plain", "trainer"}
    assert all(len(c["builds"]) == 2 and 0 <= c["p"] <= 1 for c in figures["comparisons"].values())
