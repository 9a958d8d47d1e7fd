"""scripts/trial_time_shares.py: a sweep's time per phase from its run logs, against a hand count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.trial_time_shares import main, sweep_shares


def _log(out: Path, run_id: str, events: list[dict]) -> None:
    path = out / "runs" / run_id / "progress.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")


def test_phases_add_up_to_a_hand_count_with_a_restarted_trial_and_the_gaps_between_trials(tmp_path, capsys):
    # Run a: one attempt, 100 -> 130. Start-up 4; epoch 1: 10 train + 2 validation; 1 s of checkpoint before
    # epoch 2: 9 + 2; final test 2.
    _log(tmp_path, "a", [
        {"event": "trial", "time": 100.0}, {"event": "start", "time": 104.0},
        {"event": "epoch", "time": 116.0, "train_s": 10.0, "validation_s": 2.0},
        {"event": "epoch", "time": 128.0, "train_s": 9.0, "validation_s": 2.0},
        {"event": "done", "time": 130.0}])
    # Run b: killed after one epoch (100 -> 115), restarted 120 -> 140; the old log format (no train_s) in the
    # second attempt. Start-up 3 + 5; epoch 10 + 1 (+ 1 s of checkpoint... none: it is the first epoch); the
    # second attempt's epoch counts 12 as "epochs"; final test 3.
    _log(tmp_path, "b", [
        {"event": "trial", "time": 100.0}, {"event": "start", "time": 103.0},
        {"event": "epoch", "time": 115.0, "train_s": 10.0, "validation_s": 1.0},
        {"event": "trial", "time": 120.0}, {"event": "start", "time": 125.0},
        {"event": "epoch", "time": 137.0}, {"event": "done", "time": 140.0}])
    total, runs = sweep_shares(tmp_path, slots=2)
    assert runs == 2
    assert total["start-up"] == pytest.approx(4 + 3 + 5)
    assert total["training steps"] == pytest.approx(10 + 9 + 10)
    assert total["validation"] == pytest.approx(2 + 2 + 1)
    assert total["checkpoints"] == pytest.approx(1 + 1)  # a's gap before epoch 2; b's first epoch: 12 - 11
    assert total["epochs"] == pytest.approx(12)
    assert total["final test"] == pytest.approx(2 + 3)
    # Two slots from 100 to 140 = 80 slot-seconds; attempts held 30 + 15 + 20 = 65.
    assert total["between trials"] == pytest.approx(15)
    assert sum(total.values()) == pytest.approx(80)

    main([str(tmp_path), "--slots", "2"])
    printed = capsys.readouterr().out
    assert printed.startswith("2 runs, 1.3 slot-minutes")
    assert "| training steps | 0.5 | 36.2% | 14.5 |" in printed  # (10 + 9 + 10) s over 2 runs


def test_a_folder_without_run_logs_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="no runs/\\*/progress.jsonl under"):
        main([str(tmp_path)])
