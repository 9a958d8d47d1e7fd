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


def test_since_counts_only_the_attempts_that_started_at_or_after_it(tmp_path, capsys):
    # A sweep stopped at 1000 and resumed at 5000: run a finished before the stop, run b was interrupted at
    # 1010 and restarted at 5000, run c ran only after the resume. From 5000: b's second attempt and c.
    _log(tmp_path, "a", [
        {"event": "trial", "time": 900.0}, {"event": "start", "time": 902.0},
        {"event": "epoch", "time": 950.0, "train_s": 40.0, "validation_s": 5.0}, {"event": "done", "time": 960.0}])
    _log(tmp_path, "b", [
        {"event": "trial", "time": 990.0}, {"event": "start", "time": 995.0},
        {"event": "trial", "time": 5000.0}, {"event": "start", "time": 5002.0},
        {"event": "epoch", "time": 5030.0, "train_s": 25.0, "validation_s": 2.0}, {"event": "done", "time": 5034.0}])
    _log(tmp_path, "c", [
        {"event": "trial", "time": 5001.0}, {"event": "start", "time": 5004.0},
        {"event": "epoch", "time": 5024.0, "train_s": 16.0, "validation_s": 3.0}, {"event": "done", "time": 5026.0}])
    total, runs = sweep_shares(tmp_path, slots=2, since=5000.0)
    assert runs == 2
    assert total["start-up"] == pytest.approx(2 + 3)
    assert total["training steps"] == pytest.approx(25 + 16)
    assert total["validation"] == pytest.approx(2 + 3)
    assert total["checkpoints"] == pytest.approx(1 + 1)
    assert total["final test"] == pytest.approx(4 + 2)
    # Two slots from 5000 to 5034 = 68 slot-seconds; attempts held 34 + 25.
    assert total["between trials"] == pytest.approx(68 - 34 - 25)
    # Without --since the idle time between the sittings counts as between trials.
    everything, _ = sweep_shares(tmp_path, slots=2)
    assert everything["between trials"] > 7000

    main([str(tmp_path), "--slots", "2", "--since", "1970-01-01T01:23:20Z"])  # 5000 s after the epoch
    assert capsys.readouterr().out.startswith("2 runs, 1.1 slot-minutes")


def test_a_since_without_a_time_zone_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--since", "2026-12-07T00:46"])
    assert "has no time zone: end it with Z for UTC" in capsys.readouterr().err
