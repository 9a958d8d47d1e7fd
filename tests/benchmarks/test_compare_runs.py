"""Two benchmark JSON files compared ratio by ratio."""

from __future__ import annotations

import json

import pytest

from benchmarks import compare_runs
from tests.conftest import REPO_ROOT

RESULTS = REPO_ROOT / "docs" / "results" / "benchmark"


def _figures(full: tuple[float, float, float], lora: tuple[float, float, float] | None) -> dict:
    def interval(mean: float, low: float, high: float) -> dict:
        return {"mean": mean, "low": low, "high": high, "n": 12}

    ab = [{"method": "full", "precision": "32-true", "ratios": {"plain": interval(*full)}}]
    if lora is not None:
        ab.append({"method": "lora", "precision": "32-true", "ratios": {"plain": interval(*lora)}})
    e2e = [{"task": "cb", "method": "bitfit", "ratio": interval(1.0, 0.9, 1.1),
            "per_epoch": interval(1.0, 0.98, 1.02)}]
    return {"ab": ab, "e2e": e2e}


def test_overlapping_intervals_agree_and_disjoint_ones_do_not():
    rows, disagree = compare_runs.compare(_figures((1.00, 0.98, 1.02), (1.0, 0.99, 1.01)),
                                          _figures((1.03, 1.01, 1.05), (1.05, 1.04, 1.06)))
    by_name = {row[0]: row for row in rows}
    full = by_name["per step ours / plain (full, 32-true)"]
    assert full[3:] == ["yes", "no"]  # they overlap on [1.01, 1.02]; neither mean is inside the other's interval
    assert by_name["per step ours / plain (lora, 32-true)"][3] == "NO"
    assert by_name["end to end per epoch Trainer / ours (cb, bitfit)"][3:] == ["yes", "yes"]
    assert disagree == 1 and len(rows) == 4


def test_a_ratio_missing_from_one_run_counts_against_agreement(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_figures((1.0, 0.98, 1.02), (1.0, 0.99, 1.01))))
    b.write_text(json.dumps(_figures((1.0, 0.98, 1.02), None)))
    assert compare_runs.main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "(missing)" in out and "3 of 4 ratios agree" in out
    assert compare_runs.main([str(a), str(a)]) == 0


def test_a_missing_file_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare_runs.main([str(tmp_path / "nope.json"), str(tmp_path / "nope.json")])
    assert "no such file" in capsys.readouterr().err


def test_the_committed_comparison_regenerates_byte_for_byte(capsys, monkeypatch):
    """``docs/results/benchmark/compare_run3_run4.md`` is this command's output on the committed runs 3 and 4."""
    monkeypatch.chdir(RESULTS)
    assert compare_runs.main(["run3.json", "run4.json"]) == 0
    assert capsys.readouterr().out == (RESULTS / "compare_run3_run4.md").read_text()
