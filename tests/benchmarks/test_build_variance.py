"""Fresh builds of one A/B cell: the ANOVA over builds separates a shift between builds from block noise."""

from __future__ import annotations

import json
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


def test_the_interval_over_build_means_treats_builds_as_the_draws():
    builds = [_noise(5, 8, 1.0), _noise(6, 8, 1.05), _noise(7, 8, 0.98)]
    figures = build_variance.between_builds(builds)
    over, pooled = figures["over_build_means"], figures["pooled"]
    means = [sum(b) / len(b) for b in builds]
    expected = ratio_interval(means)
    assert (over["mean"], over["low"], over["high"], over["n"]) == pytest.approx(
        (expected.mean, expected.low, expected.high, 3))
    assert over["high"] - over["low"] > pooled["high"] - pooled["low"]  # builds that differ widen it


def test_processes_are_compared_on_their_pooled_pairs():
    from scipy import stats

    one = [_noise(8, 6, 1.0), _noise(9, 6, 1.0)]
    two = [_noise(10, 6, 1.1), _noise(11, 6, 1.1)]
    c = build_variance.between_processes([one, two])
    assert c["p"] == pytest.approx(stats.f_oneway(one[0] + one[1], two[0] + two[1]).pvalue) and c["p"] < 0.001
    assert c["processes"][1]["mean"] == pytest.approx(ratio_interval(two[0] + two[1]).mean)
    assert len(c["builds"]["builds"]) == 4
    with pytest.raises(ValueError, match="at least two runs"):
        build_variance.between_processes([one])


def _saved_run(path, precision: str, centre: float, seed: int) -> str:
    rng = random.Random(seed)
    ours = [[1.0 + rng.gauss(0, 0.01) for _ in range(4)] for _ in range(2)]
    step_s = [{"ours": o, "plain": [t * centre for t in o], "trainer": [t * centre * 0.9 for t in o]} for o in ours]
    path.write_text(json.dumps({"method": "lora", "precision": precision, "blocks": 4, "step_s": step_s}))
    return str(path)


def test_combine_reads_saved_runs_together_and_refuses_different_cells(tmp_path, capsys):
    a = _saved_run(tmp_path / "a.json", "32-true", 1.0, 0)
    b = _saved_run(tmp_path / "b.json", "32-true", 1.2, 1)
    combined = build_variance.main(["--combine", a, b])
    plain = combined["comparisons"]["plain"]
    assert [p["mean"] for p in plain["processes"]] == pytest.approx([1.0, 1.2])
    assert combined["comparisons"]["trainer"]["processes"][1]["mean"] == pytest.approx(1.08)
    assert "ANOVA over 4 builds" in capsys.readouterr().out
    other = _saved_run(tmp_path / "c.json", "bf16-mixed", 1.0, 2)
    with pytest.raises(SystemExit):
        build_variance.main(["--combine", a, other])
    assert "different cells" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_variance.main(["--combine", a])
    assert "at least two saved runs" in capsys.readouterr().err


def test_noise_by_position_is_the_mean_absolute_deviation_from_the_cell_median(tmp_path, capsys):
    # One cell, one comparison, two builds of three blocks; ours 1 s per step, plain's times give the ratios.
    figures = {"ab": [{"ratios": {"plain": {}}, "builds": [
        {"ours": [1.0, 1.0, 1.0], "plain": [1.3, 1.0, 1.02]},
        {"ours": [1.0, 1.0, 1.0], "plain": [0.8, 0.98, 1.0]},
    ]}]}
    # Median of 1.3, 1.0, 1.02, 0.8, 0.98, 1.0 is 1.0: position 0 deviates 0.3 and 0.2, position 1 0 and 0.02.
    noise = build_variance.noise_by_position(figures)
    assert noise == pytest.approx({0: 0.25, 1: 0.01, 2: 0.01})
    path = tmp_path / "run.json"
    path.write_text(json.dumps(figures))
    build_variance.main(["--by-position", str(path)])
    assert "0 0.250, 1 0.010, 2 0.010" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        build_variance.main(["--by-position", str(tmp_path / "missing.json")])
    assert "missing.json" in capsys.readouterr().err
