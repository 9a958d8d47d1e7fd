"""Two benchmark JSON files compared ratio by ratio."""

from __future__ import annotations

import json

import pytest

from benchmarks import compare_runs


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


def test_trim_recomputes_per_step_ratios_from_the_block_times(tmp_path, capsys):
    def figures(ours: list[float]) -> dict:
        plain = [1.0] * len(ours)
        return {"ab": [{"method": "full", "precision": "32-true", "step_s": {"ours": ours, "plain": plain},
                        "ratios": {"plain": {"mean": 0.0, "low": 0.0, "high": 0.0, "n": len(ours)}}}]}

    # Run b has two stalled blocks of ours (plain / ours = 0.5): its plain mean is dragged below run a's.
    a = figures([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0])
    b = figures([1.0, 2.0, 0.99, 1.0, 1.01, 2.0, 1.0, 0.99, 1.01, 1.0])
    (row,), _ = compare_runs.compare(a, b, trim=0.2)
    assert row[3] == "yes"
    trimmed = compare_runs.ratios(b, trim=0.2)["per step ours / plain (full, 32-true)"]
    assert trimmed["mean"] == pytest.approx(1.0, abs=0.005) and trimmed["n"] == 10
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, fig in zip(paths, (a, b)):
        path.write_text(json.dumps(fig))
    with pytest.raises(SystemExit):
        compare_runs.main([*map(str, paths), "--trim", "0.6"])
    assert "--trim 0.6: use a fraction" in capsys.readouterr().err
