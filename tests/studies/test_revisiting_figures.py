"""Revisiting study Figures 3 and 5 and the iterations finding on hand-made records with known scores."""

from __future__ import annotations

import statistics

import pytest
from scipy import stats

from pet_lightning.studies.common import DIFFERS, INCONCLUSIVE, REPRODUCES, UNTESTABLE
from pet_lightning.studies.revisiting_figures import write_figure3, write_figure5, write_iterations
from pet_lightning.sweeps.files import SweepError
from tests.studies.records import csv_rows as _csv_rows
from tests.studies.records import finding as _finding
from tests.studies.records import make_record
from tests.studies.records import mean as _mean

SEEDS = [1, 2, 3, 4, 5, 6]


def _record(task: str, method: str, seed: int, score: float, study: str, train_examples: int = 250,
            pct: float = 1.0, steps: int = 100) -> dict:
    return make_record(task, method, seed, score, study, train_examples=train_examples, pct=pct, steps=steps)



# Figure 3: prefix against full on the upper bound (max over seeds).
FIGURE3_FULL = {"cb": [70, 74, 72, 78], "rte": [60, 63, 65, 61]}  # max 78, 65
FIGURE3_LOWER = {"cb": [66, 71, 69, 70], "rte": [58, 62, 60, 57]}  # max 71, 62: behind on both
FIGURE3_HIGHER = {"cb": [75, 80, 79, 77], "rte": [64, 66, 68, 63]}  # max 80, 68: ahead on both
FIGURE3_CLAIM = "prefix tuning lags full fine-tuning even on the upper bound"


def _figure3_records(prefix: dict) -> list[dict]:
    records = []
    for method, table in (("full", FIGURE3_FULL), ("prefix", prefix)):
        for task, values in table.items():
            records += [_record(task, method, seed, score, "revisiting_figure3")
                        for seed, score in zip(SEEDS, values)]
    return records


def test_figure3_relative_gap_on_the_max_and_verdict(tmp_path):
    paths = write_figure3(_figure3_records(FIGURE3_LOWER), tmp_path)
    assert {"figure3", "figure3_csv", "figure3_png", "report"} <= set(paths)
    assert (tmp_path / "figure3.png").is_file() and (tmp_path / "figure3.png").stat().st_size > 0
    rows = {r["task"]: r for r in _csv_rows(tmp_path / "figure3.csv")}
    assert set(rows) == {"cb", "rte"}
    for task in ("cb", "rte"):
        top_full, top_prefix = max(FIGURE3_FULL[task]), max(FIGURE3_LOWER[task])
        assert float(rows[task]["max_full"]) == pytest.approx(top_full)
        assert float(rows[task]["max_prefix"]) == pytest.approx(top_prefix)
        assert float(rows[task]["relative_gap_max"]) == pytest.approx(100 * (top_prefix - top_full) / top_full)
        mean_gap = 100 * (_mean(FIGURE3_LOWER[task]) - _mean(FIGURE3_FULL[task])) / _mean(FIGURE3_FULL[task])
        assert float(rows[task]["relative_gap_mean"]) == pytest.approx(mean_gap)
    finding = _finding(tmp_path / "report.md", FIGURE3_CLAIM)
    assert finding[1] == f"**{REPRODUCES}**"
    assert "behind on 2 of 2 tasks" in finding[2]


def test_figure3_prefix_ahead_does_not_reproduce(tmp_path):
    write_figure3(_figure3_records(FIGURE3_HIGHER), tmp_path)
    rows = {r["task"]: r for r in _csv_rows(tmp_path / "figure3.csv")}
    assert float(rows["cb"]["relative_gap_max"]) == pytest.approx(100 * (80 - 78) / 78)
    finding = _finding(tmp_path / "report.md", FIGURE3_CLAIM)
    assert finding[1] == f"**{DIFFERS}**"
    assert "behind on 0 of 2 tasks" in finding[2]


# Figure 5: three parameter scales per family on copa, 4 seeds; the spread grows with the size.
FIGURE5_PCT = {"small": 0.1, "medium": 0.5, "large": 2.0}
FIGURE5_SPREAD = {"small": 0.5, "medium": 1.5, "large": 3.0}
FIGURE5_DEVIATIONS = [-1.5, -0.5, 0.5, 1.5]


def _figure5_scores(spread: dict = FIGURE5_SPREAD) -> dict[str, list[float]]:
    return {f"{family}_{size}": [base + spread[size] * d for d in FIGURE5_DEVIATIONS]
            for family, base in (("adapter", 70), ("lora", 68)) for size in FIGURE5_PCT}


def _figure5_records(scores: dict) -> list[dict]:
    return [_record("copa", method, seed, score, "revisiting_figure5", pct=FIGURE5_PCT[method.split("_")[1]])
            for method, values in scores.items() for seed, score in zip(SEEDS[:4], values)]


def test_figure5_table_figure_and_per_family_tau(tmp_path):
    scores = _figure5_scores()
    paths = write_figure5(_figure5_records(scores), tmp_path)
    assert {"figure5", "figure5_csv", "figure5_png", "report"} <= set(paths)
    assert (tmp_path / "figure5.png").is_file() and (tmp_path / "figure5.png").stat().st_size > 0
    rows = _csv_rows(tmp_path / "figure5.csv")
    assert len(rows) == 6
    by_method = {f"{r['family']}_{r['size']}": r for r in rows}
    assert set(by_method) == set(scores)
    for method, values in scores.items():
        assert float(by_method[method]["std"]) == pytest.approx(statistics.stdev(values))
        assert float(by_method[method]["param_pct"]) == pytest.approx(FIGURE5_PCT[method.split("_")[1]])
        assert int(by_method[method]["n"]) == 4
    pct = list(FIGURE5_PCT.values())
    for family in ("adapter", "lora"):
        stds = [statistics.stdev(scores[f"{family}_{size}"]) for size in FIGURE5_PCT]
        expected = stats.kendalltau(pct, stds)
        # Three sizes: tau = 1 has p = 1/3, so the best verdict is "same direction, not significant".
        assert expected.statistic == pytest.approx(1.0) and expected.pvalue > 0.05
        finding = _finding(tmp_path / "report.md", f"{family}: fewer trainable parameters")
        assert finding[1] == f"**{INCONCLUSIVE}**"
        assert f"tau = {expected.statistic:.2f} (p = {expected.pvalue:.3g})" in finding[2]
    with pytest.raises(AssertionError):
        _finding(tmp_path / "report.md", "prefix: ")  # no prefix_<size> runs: no panel, no finding


def test_figure5_spread_falling_with_size_does_not_reproduce(tmp_path):
    spread = {"small": 3.0, "medium": 1.5, "large": 0.5}
    write_figure5(_figure5_records(_figure5_scores(spread)), tmp_path)
    finding = _finding(tmp_path / "report.md", "adapter: fewer trainable parameters")
    assert finding[1] == f"**{DIFFERS}**"
    assert "tau = -1.00" in finding[2]


def test_figure5_needs_family_size_methods(tmp_path):
    records = [_record("copa", method, seed, 70 + seed, "revisiting_figure5")
               for method in ("full", "lora") for seed in SEEDS[:4]]
    with pytest.raises(SweepError, match="no <family>_<size> methods"):
        write_figure5(records, tmp_path)


# Iterations: rte, 1k examples for 300 steps, 2k for 600, 1k for 600 (all medium resource).
ITER_SETUP = {"1k": (1000, 300), "2k": (2000, 600), "1k_long": (1000, 600)}
ITER_SCORES = {
    "1k": [50, 70, 55, 72, 48, 66],  # wide
    "2k": [60, 64, 58, 66, 61, 63],
    "1k_long": [61, 62, 60.5, 62.5, 61.5, 60],  # narrow
}
ITER_CLAIM = "rte / full: std falls with more iterations at equal data"


def _iteration_records(scores: dict, seeds=SEEDS) -> list[dict]:
    records = []
    for condition, values in scores.items():
        examples, steps = ITER_SETUP[condition]
        records += [_record("rte", f"full@{condition}", seed, score, "revisiting_iterations",
                            train_examples=examples, steps=steps) for seed, score in zip(seeds, values)]
    return records


def test_iterations_narrower_long_run_reproduces_with_levene_p(tmp_path):
    paths = write_iterations(_iteration_records(ITER_SCORES), tmp_path)
    assert {"iterations", "iterations_csv", "iterations_png", "report"} <= set(paths)
    assert (tmp_path / "iterations.png").is_file() and (tmp_path / "iterations.png").stat().st_size > 0
    rows = {r["condition"]: r for r in _csv_rows(tmp_path / "iterations.csv")}
    assert list(rows) == ["1k", "2k", "1k_long"]
    for condition, (_, steps) in ITER_SETUP.items():
        assert float(rows[condition]["steps"]) == pytest.approx(steps)
        assert float(rows[condition]["std"]) == pytest.approx(statistics.stdev(ITER_SCORES[condition]))
        assert int(rows[condition]["n"]) == 6
        assert rows[condition]["task"] == "rte" and rows[condition]["method"] == "full"
    expected = stats.levene(ITER_SCORES["1k"], ITER_SCORES["1k_long"])
    assert expected.pvalue < 0.05
    finding = _finding(tmp_path / "report.md", ITER_CLAIM)
    assert finding[1] == f"**{REPRODUCES}**"
    assert f"Levene p = {expected.pvalue:.3g}" in finding[2]
    assert f"2k {statistics.stdev(ITER_SCORES['2k']):.2f}" in finding[2]


def test_iterations_equal_spread_does_not_reproduce(tmp_path):
    scores = dict(ITER_SCORES)
    scores["1k_long"] = [v + 5 for v in ITER_SCORES["1k"]]  # the same spread, shifted
    write_iterations(_iteration_records(scores), tmp_path)
    finding = _finding(tmp_path / "report.md", ITER_CLAIM)
    assert finding[1] != f"**{REPRODUCES}**"
    assert finding[1] in (f"**{DIFFERS}**", f"**{INCONCLUSIVE}**")


def test_iterations_two_seeds_not_testable(tmp_path):
    scores = {condition: values[:2] for condition, values in ITER_SCORES.items()}
    write_iterations(_iteration_records(scores, seeds=SEEDS[:2]), tmp_path)
    assert _finding(tmp_path / "report.md", ITER_CLAIM)[1] == f"**{UNTESTABLE}**"
    assert (tmp_path / "iterations.png").is_file()
