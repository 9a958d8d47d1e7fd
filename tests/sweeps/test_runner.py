"""Real sweeps on a local Ray instance (CPU): concurrency, retries, failures, kill -9 of the driver, bad addresses.

Failures and pauses are injected by :mod:`tests.helpers.faults`, which the trial workers load as a Lightning external
callback (its folder on ``PYTHONPATH``)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pet_lightning.sweeps.records import load_results
from pet_lightning.sweeps.run_log import PROGRESS_FILE
from pet_lightning.sweeps.runner import main as sweep_main
from tests.conftest import REPO_ROOT
from tests.helpers.faults import FAULTS_ENV, Faults, plugin_env
from tests.sweeps.conftest import STEPS_PER_EPOCH, final_checkpoint, same_weights, trainable_state, write_tiny_sweep

pytestmark = pytest.mark.slow
COMPARED = ("report", "best_selection", "best_epoch", "best_step", "steps", "epochs", "train_examples",
            "selection_examples", "report_examples", "config_hash", "run_hash", "trainable")


def _events(out: Path, run_id: str) -> list[dict]:
    path = out / "runs" / run_id / PROGRESS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def concurrent_sweep(tmp_path_factory, data_dir):
    """The 4-run sweep, 2 trials at a time; the seed-2 BitFit run raises once, after its first epoch."""
    folder = tmp_path_factory.mktemp("concurrent")
    config = write_tiny_sweep(folder / "sweep_tiny.yaml", folder / "out")
    saved = {key: os.environ.get(key) for key in (FAULTS_ENV, "PYTHONPATH", "PET_DATA_DIR", "WANDB_MODE")}
    os.environ.update({**plugin_env(), **Faults(raise_once="cb.bitfit.both.2.*").env(), "PET_DATA_DIR": data_dir,
                       "WANDB_MODE": "disabled"})
    try:
        code = sweep_main(["--config", str(config)])
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return code, folder / "out"


def test_four_runs_two_at_a_time_match_the_runs_executed_one_by_one(concurrent_sweep, reference_runs):
    code, out = concurrent_sweep
    assert code == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    records = {r["run_id"]: r for r in map(json.loads, lines)}
    assert len(lines) == 4 and set(records) == set(reference_runs)
    for run_id, reference in reference_runs.items():
        record = records[run_id]
        assert record["status"] == "ok"
        assert {k: record[k] for k in COMPARED} == {k: reference["record"][k] for k in COMPARED}, run_id
        assert record["steps"] == 2 * STEPS_PER_EPOCH and record["resource_group"] == "low"
        assert same_weights(trainable_state(final_checkpoint(out, run_id)), reference["final"]), run_id
    # Two at a time: some two runs overlapped in time.
    spans = []
    for run_id in records:
        events = _events(out, run_id)
        spans.append((events[0]["time"], events[-1]["time"]))
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:])


def test_a_run_that_raises_once_is_retried_from_its_epoch_checkpoint(concurrent_sweep, reference_runs):
    code, out = concurrent_sweep
    (run_id,) = [r for r in reference_runs if r.startswith("cb.bitfit.both.2.")]
    starts = [e for e in _events(out, run_id) if e["event"] == "start"]
    assert [(e["epoch"], e["step"], e["resumed"]) for e in starts] == [(0, 0, False), (1, STEPS_PER_EPOCH, True)]
    # The retry logged only the steps after its checkpoint (CSVLogger opened a new version for it).
    with open(sorted((out / "runs" / run_id / "csv").glob("version_*/metrics.csv"))[-1]) as handle:
        logged = [int(row["step"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert logged and min(logged) >= STEPS_PER_EPOCH
    others = [r for r in reference_runs if r != run_id]
    assert all(len([e for e in _events(out, r) if e["event"] == "start"]) == 1 for r in others)


def test_an_in_process_sweep_leaves_the_process_signal_handlers_as_it_found_them(tmp_path, data_dir, monkeypatch):
    # Ray Tune points SIGINT and SIGUSR1 at its run and leaves SIGUSR1 there; a later fit under SLURM in the same
    # process would then run without Lightning's requeue handler (Lightning skips a signal that has one).
    config = write_tiny_sweep(tmp_path / "sweep_signals.yaml", tmp_path / "out", seeds=[1],
                              methods={"frozen": {"overrides": {"model": {"learning_rate": 1.0e-2}}}},
                              base={"trainer": {"max_epochs": 1, "precision": "32-true", "num_sanity_val_steps": 0},
                                    "data": {"init_args": {"max_length": 32, "train_subset": 16, "batch_size": 8}}})
    monkeypatch.setenv("PET_DATA_DIR", data_dir)
    monkeypatch.setenv("WANDB_MODE", "disabled")

    def user_handler(signum, frame) -> None:
        raise AssertionError("not called in this test")

    previous = signal.signal(signal.SIGUSR1, user_handler)
    try:
        before = {signal.SIGINT: signal.getsignal(signal.SIGINT), signal.SIGUSR1: user_handler}
        assert sweep_main(["--config", str(config)]) == 0
        assert {sig: signal.getsignal(sig) for sig in before} == before
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_run_that_always_raises_is_a_failed_record_and_a_nonzero_exit(tmp_path, data_dir, monkeypatch, capfd):
    config = write_tiny_sweep(tmp_path / "sweep_fail.yaml", tmp_path / "out", seeds=[1],
                              methods={"frozen": {"overrides": {"model": {"learning_rate": 1.0e-2}}}})
    for key, value in {**Faults(raise_always="cb.frozen.*").env(), "PYTHONPATH": plugin_env()["PYTHONPATH"]}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert sweep_main(["--config", str(config)]) == 1
    (record,) = load_results(tmp_path / "out" / "results.jsonl", include_failed=True)
    assert record["status"] == "failed"
    assert "InjectedFault" in record["error"] and "fails every attempt" in record["error"]
    assert record["run_id"].startswith("cb.frozen.both.1.") and record["config_hash"]
    # max_failures=1: one retry, then the failure is final.
    assert len([e for e in _events(tmp_path / "out", record["run_id"]) if e["event"] == "start"]) == 2
    err = capfd.readouterr().err
    summary = [line for line in err.splitlines() if "failed after their retries" in line]
    assert len(summary) == 1 and record["run_id"] in summary[0]


def test_a_killed_driver_resumes_without_redoing_finished_runs(tmp_path, sweep_env, reference_runs):
    out = tmp_path / "out"
    # One seed, one run at a time: the same run ids as the reference (engine settings are not part of a run's id).
    config = write_tiny_sweep(tmp_path / "sweep_kill.yaml", out, seeds=[1], max_concurrent_trials=1)
    command = [sys.executable, "cli.py", "sweep", "--config", str(config)]
    env = {**plugin_env(sweep_env), **Faults(pause_between_epochs=6).env()}
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results = out / "results.jsonl"
    ids = [r for r in reference_runs if ".both.1." in r]
    deadline = time.time() + 400
    interrupted = None
    while interrupted is None:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "no run reached the state to interrupt in time"
        finished = [json.loads(x)["run_id"] for x in results.read_text().splitlines()] if results.exists() else []
        for run_id in ids:
            epochs = [e for e in _events(out, run_id) if e["event"] == "epoch"]
            if len(finished) == 1 and run_id not in finished and len(epochs) == 1:
                interrupted = run_id
        time.sleep(0.2)
    time.sleep(2)  # inside the 6 s pause after epoch 0: the epoch checkpoint is stored, epoch 1 has not begun
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = results.read_text().splitlines()
    assert len(first) == 1

    resumed = subprocess.run(command, cwd=REPO_ROOT, env=sweep_env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "1 already finished" in resumed.stdout and "restored experiment" in resumed.stdout
    lines = results.read_text().splitlines()
    assert lines[:1] == first and len(lines) == 2, "finished runs are never redone nor rewritten"
    (done,) = [r for r in ids if r != interrupted]
    assert [e["event"] for e in _events(out, done)].count("trial") == 1, "the finished run was not started again"
    starts = [e for e in _events(out, interrupted) if e["event"] == "start"]
    assert [(e["epoch"], e["step"], e["resumed"]) for e in starts] == [(0, 0, False), (1, STEPS_PER_EPOCH, True)]
    record = {r["run_id"]: r for r in load_results(results)}[interrupted]
    reference = reference_runs[interrupted]
    assert {k: record[k] for k in COMPARED} == {k: reference["record"][k] for k in COMPARED}
    assert same_weights(trainable_state(final_checkpoint(out, interrupted)), reference["final"])


def test_an_unreachable_address_fails_fast_in_one_line(tmp_path, capsys):
    config = write_tiny_sweep(tmp_path / "sweep_a.yaml", tmp_path / "out", seeds=[1])
    start = time.monotonic()
    assert sweep_main(["--config", str(config), "--address", "127.0.0.1:9"]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach a Ray cluster at 127.0.0.1:9") and err.count("\n") == 1


def test_gpus_per_trial_without_a_gpu_fails_at_once(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = write_tiny_sweep(tmp_path / "sweep_g.yaml", tmp_path / "out", seeds=[1])
    assert sweep_main(["--config", str(config), "--gpus-per-trial", "0.25"]) == 2
    err = capsys.readouterr().err
    assert "gpus_per_trial=0.25 but Ray sees no GPU" in err and err.count("\n") == 1
