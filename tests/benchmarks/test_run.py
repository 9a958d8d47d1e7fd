"""The benchmark runs end to end in quick mode and reports every figure it promises (not a timing test)."""

from __future__ import annotations

import re

import pytest

from benchmarks import run


@pytest.fixture(autouse=True)
def _data(data_dir, monkeypatch):
    monkeypatch.setenv("PET_DATA_DIR", data_dir)


def test_quick_benchmark_prints_every_table_with_verdicts(capsys):
    figures = run.main(["--quick", "--strategies", "full,lora", "--steps", "1"])
    out = capsys.readouterr().out
    for title in ("== Strategies", "== Overhead", "== Ours vs Hugging Face Trainer", "== Linear probing",
                  "== Scaling", "== Targets"):
        assert title in out
    full, lora = figures["strategies"]["full"], figures["strategies"]["lora"]
    for result in (full, lora, figures["plain"]["full"], figures["trainer"]["lora"]):
        assert result["train_sps"] > 0 and result["peak_mb"] is not None
    assert len(full["train_sps_repeats"]) == 2  # quick mode: two repeats, median reported
    assert full["eval_sps"] > 0
    # Only trainable tensors have optimizer state and go into our checkpoints.
    assert 0 < lora["optimizer_bytes"] < full["optimizer_bytes"] / 50
    assert lora["checkpoint_bytes"] < full["checkpoint_bytes"] / 20
    assert figures["trainer"]["lora"]["optimizer_bytes"] == lora["optimizer_bytes"]
    assert {r["max_length"] for r in figures["scaling"]} == {32, 64}
    assert figures["cache"]["cached_later_s"] < figures["cache"]["uncached_s"]
    names = [name for name, _, _ in figures["targets"]]
    assert "our loop within 5% of the plain loop (full)" in names
    assert "ours vs Trainer+peft (lora)" in names
    assert all(verdict.split()[0] in ("PASS", "SHORT") for _, _, verdict in figures["targets"])


def test_unregistered_strategies_are_reported_not_run(capsys, monkeypatch):
    monkeypatch.setattr(run, "STRATEGY_ROWS", [("made-up", "no_such_strategy", {}, "")])
    run.main(["--quick", "--strategies", "no_such_strategy", "--sections", "strategies"])
    assert re.search(r"made-up\s+n/a \(not registered\)", capsys.readouterr().out)
