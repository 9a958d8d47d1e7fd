"""The run log's epoch events say where each epoch's time went (read by scripts/trial_time_shares.py)."""

from __future__ import annotations

import json

import pytest

from scripts.trial_time_shares import run_phases


def test_each_epoch_splits_into_training_steps_and_validation_within_its_own_interval(reference_runs):
    for run_id, result in reference_runs.items():
        events = [json.loads(line) for line in result["log"].read_text().splitlines()]
        kinds = [e["event"] for e in events]
        assert kinds == ["start", "epoch", "epoch", "done"], (run_id, kinds)  # executed outside Ray: no "trial"
        previous = events[0]["time"]
        for epoch in (e for e in events if e["event"] == "epoch"):
            assert epoch["train_s"] > 0 and epoch["validation_s"] > 0, (run_id, epoch)
            assert epoch["train_s"] + epoch["validation_s"] <= epoch["time"] - previous + 0.01, (run_id, epoch)
            previous = epoch["time"]
        with_trial = [{"event": "trial", "time": events[0]["time"] - 1.0}, *events]
        phases, spans = run_phases(with_trial)
        assert sum(phases.values()) == pytest.approx(spans[0][1] - spans[0][0], abs=0.01), "they cover the attempt"
        assert phases["training steps"] == pytest.approx(sum(e["train_s"] for e in events if e["event"] == "epoch"))
