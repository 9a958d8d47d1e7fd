"""Sweeps on a real two-node Ray cluster on this machine (``ray start`` head and worker, one CPU each), with trial
state in a ``file://`` URI that is not the sweep's out folder: trials on both nodes, a node killed mid-trial, the
driver killed mid-sweep.

Every node pauses its runs :data:`PAUSE_S` seconds before their second epoch (:mod:`tests.helpers.faults`, in the
nodes' environment): the first epoch's checkpoint is stored by then, and the tests kill a node or the driver there.
The uninterrupted sweep (:func:`cluster_sweep`) is the reference the interrupted runs must reproduce.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pet_lightning.sweeps.records import load_results
from pet_lightning.sweeps.run_log import PROGRESS_FILE
from pet_lightning.sweeps.runner import main as sweep_main
from tests.conftest import REPO_ROOT
from tests.helpers.faults import Faults, plugin_env
from tests.helpers.ray_cluster import LocalRayCluster
from tests.sweeps.conftest import (
    STEPS_PER_EPOCH,
    final_checkpoint,
    same_weights,
    stored_checkpoints,
    trainable_state,
    write_tiny_sweep,
)

pytestmark = pytest.mark.slow
PAUSE_S = 5.0
COMPARED = ("report", "best_selection", "best_epoch", "best_step", "steps", "epochs", "config_hash", "run_hash",
            "trainable")


def _sweep_file(folder: Path, backbone: str, **settings) -> Path:
    """The tiny sweep on the tiny backbone, its trial state in ``file://<folder>/bucket``."""
    path = write_tiny_sweep(folder / "sweep_tiny.yaml", folder / "out", storage_path=f"file://{folder}/bucket",
                            **settings)
    sweep = yaml.safe_load(path.read_text())
    sweep["base"]["model"]["backbone"] = backbone
    path.write_text(yaml.safe_dump(sweep), encoding="utf-8")
    return path


def _command(config: Path, cluster: LocalRayCluster) -> list[str]:
    return [sys.executable, "cli.py", "sweep", "--config", str(config), "--address", cluster.address]


def _events(out: Path, run_id: str) -> list[dict]:
    """The run's ``progress.jsonl`` events (while a trial may be writing the last line: whole lines only)."""
    path = out / "runs" / run_id / PROGRESS_FILE
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def test_an_unknown_storage_scheme_fails_before_any_trial_in_one_line(tmp_path, capsys):
    config = write_tiny_sweep(tmp_path / "sweep_s.yaml", tmp_path / "out", seeds=[1],
                              storage_path="nosuch://bucket/sweeps")
    assert sweep_main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: storage_path nosuch://bucket/sweeps: no file system for nosuch://") and \
        err.count("\n") == 1, err
    assert "file://, s3://, gs://" in err and not (tmp_path / "out" / "runs").exists()


def test_storage_that_cannot_be_written_fails_before_any_trial_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for storage in (f"file://{blocker}/sweeps",):
        config = write_tiny_sweep(tmp_path / "sweep_s.yaml", tmp_path / "out", seeds=[1], storage_path=storage)
        start = time.monotonic()
        assert sweep_main(["--config", str(config)]) == 2
        assert time.monotonic() - start < 60
        err = capsys.readouterr().err
        assert err.startswith(f"error: storage_path {storage}: cannot write there (") and err.count("\n") == 1, err
        assert not (tmp_path / "out" / "runs").exists()


SLURM_STUBS = {
    # Each stub logs its arguments; `scontrol show hostnames` names two nodes, `srun ... hostname` gives an address.
    "scontrol": 'echo "scontrol $*" >> "$STUB_LOG"; [[ $1 == show ]] && printf "n1\\nn2\\n"; exit 0',
    "srun": 'echo "srun $*" >> "$STUB_LOG"; [[ " $* " == *" hostname "* ]] && echo "10.0.0.1 fe80::1"; exit 0',
    "ray": 'echo "ray $*" >> "$STUB_LOG"; exit 0',
    # The sweep: SLURM's warning signal reaches the batch script while it runs, then it ends (killed by SLURM).
    "python": 'echo "python $*" >> "$STUB_LOG"; kill -USR1 $PPID; sleep 1; exit 0',
}


def test_the_slurm_script_starts_ray_on_every_node_runs_the_sweep_and_requeues(tmp_path):
    script = REPO_ROOT / "scripts" / "slurm_sweep.sh"
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "scripts/slurm_sweep.sh" in (REPO_ROOT / "docs" / "scale_out.md").read_text()
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in SLURM_STUBS.items():
        (stubs / name).write_text(f"#!/bin/bash\n{body}\n")
        (stubs / name).chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUB_LOG": str(log), "SLURM_JOB_ID": "42",
           "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_CPUS_PER_TASK": "8", "PYTHON": "python"}
    done = subprocess.run(["bash", str(script), "configs/revisiting/sweep_cb.yaml", "--max-failures", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = log.read_text().splitlines()
    address = "10.0.0.1:6379"
    head = next(call for call in calls if "--head" in call)
    assert head.startswith("srun --nodes=1 --ntasks=1 -w n1 ray start --head") and "--port=6379" in head
    assert any(call.startswith("srun --nodes=1 --ntasks=1 --exclude=n1 ray start --address " + address)
               for call in calls), calls
    sweep = ("python cli.py sweep --config configs/revisiting/sweep_cb.yaml --address " + address
             + " --max-failures 2")
    assert sweep in calls and "scontrol requeue 42" in calls
    assert calls.index(sweep) < calls.index("scontrol requeue 42")


class Driver:
    """``python cli.py sweep`` in a session of its own, its output lines kept with the time each arrived."""

    def __init__(self, command: list[str], env: dict[str, str]):
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, start_new_session=True, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def wait(self, timeout: float = 600) -> int:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.wait()


def _wait_for(condition, driver: Driver, what: str, timeout: float = 300):
    deadline = time.time() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert driver.proc.poll() is None, f"the sweep ended before {what}:\n{driver.output()[-3000:]}"
        assert time.time() < deadline, f"no {what} after {timeout:.0f} s:\n{driver.output()[-3000:]}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(data_dir, sweep_env):
    """A head and one worker node, one CPU each; their runs pause before the second epoch."""
    env = {**plugin_env(sweep_env), **Faults(pause_between_epochs=PAUSE_S).env()}
    cluster = LocalRayCluster(env).start(workers=1)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster_sweep(cluster, tmp_path_factory, sweep_env, tiny):
    """The 4-run tiny sweep on the cluster, two trials at a time, uninterrupted."""
    folder = tmp_path_factory.mktemp("cluster")
    config = _sweep_file(folder, tiny)
    done = subprocess.run(_command(config, cluster), cwd=REPO_ROOT, env={**sweep_env, **cluster.auth_env},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = {r["run_id"]: r for r in load_results(folder / "out" / "results.jsonl")}
    return done, folder, records


def test_a_sweep_on_two_nodes_trains_on_both_and_records_each_run_once(cluster, cluster_sweep):
    done, folder, records = cluster_sweep
    out, bucket = folder / "out", folder / "bucket"
    assert f"on the Ray cluster at {cluster.address} (2 CPUs" in done.stdout
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4 and len({json.loads(line)["run_id"] for line in lines}) == 4
    nodes = {record["node"]["id"] for record in records.values()}
    assert nodes == {node.node_id for node in cluster.nodes}, "two trials at a time: one on each node"
    for run_id, record in records.items():
        assert record["status"] == "ok" and record["steps"] == 2 * STEPS_PER_EPOCH
        trials = [e for e in _events(out, run_id) if e["event"] == "trial"]
        assert [e["node"] for e in trials] == [record["node"]["id"]], "one attempt, on the node the record names"
        # Ray's trial state went to the storage URI, not to the out folder.
        assert final_checkpoint(bucket, run_id).is_file()
        # And the finished run's folder, the kept model with it, the record saying where.
        assert record["stored_at"] == f"file://{bucket}/runs/{run_id}"
        stored, local = bucket / "runs" / run_id, out / record["checkpoint"]
        assert (stored / record["checkpoint"].split("/", 2)[2]).read_bytes() == local.read_bytes()
        assert (stored / "predictions.csv").read_bytes() == (out / record["predictions"]).read_bytes()
        assert json.loads((stored / "record.json").read_text()) == record
    assert not list(out.glob("tune-*"))


def test_a_driver_killed_on_a_cluster_resumes_without_redoing_finished_runs(cluster, cluster_sweep, tmp_path,
                                                                             sweep_env, tiny):
    _, reference_folder, reference = cluster_sweep
    config = _sweep_file(tmp_path, tiny, seeds=[1], max_concurrent_trials=1)
    out, bucket = tmp_path / "out", tmp_path / "bucket"
    results = out / "results.jsonl"
    ids = [run_id for run_id in reference if ".both.1." in run_id]
    driver = Driver(_command(config, cluster), {**sweep_env, **cluster.auth_env})

    def one_done_one_in_its_pause():
        finished = results.read_text().splitlines() if results.exists() else []
        for run_id in ids:
            epochs = [e for e in _events(out, run_id) if e["event"] == "epoch"]
            if len(finished) == 1 and run_id not in finished[0] and len(epochs) == 1:
                return run_id
        return None

    interrupted = _wait_for(one_done_one_in_its_pause, driver, "run stored its first epoch after another finished")
    time.sleep(2)  # the driver has taken in the epoch checkpoint; the run is still in its pause (its job ends too)
    driver.kill()
    first = results.read_text().splitlines()
    assert len(first) == 1

    resumed = subprocess.run(_command(config, cluster), cwd=REPO_ROOT, env={**sweep_env, **cluster.auth_env},
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "1 already finished" in resumed.stdout and "restored experiment" in resumed.stdout
    lines = results.read_text().splitlines()
    assert lines[:1] == first and len(lines) == 2, "finished runs are never redone nor rewritten"
    (finished,) = [run_id for run_id in ids if run_id != interrupted]
    assert [e["event"] for e in _events(out, finished)].count("trial") == 1, "the finished run was not started again"
    starts = [e for e in _events(out, interrupted) if e["event"] == "start"]
    assert [(e["epoch"], e["step"], e["resumed"]) for e in starts] == [(0, 0, False), (1, STEPS_PER_EPOCH, True)]
    record = {r["run_id"]: r for r in load_results(results)}[interrupted]
    assert {k: record[k] for k in COMPARED} == {k: reference[interrupted][k] for k in COMPARED}
    assert same_weights(trainable_state(final_checkpoint(bucket, interrupted)),
                        trainable_state(final_checkpoint(reference_folder / "bucket", interrupted)))


def test_a_node_lost_mid_trial_restarts_its_trial_on_the_other_node_from_its_epoch_checkpoint(
        cluster, cluster_sweep, tmp_path, sweep_env, tiny):
    _, reference_folder, reference = cluster_sweep
    head, worker = cluster.nodes[0], cluster.nodes[1]
    config = _sweep_file(tmp_path, tiny, seeds=[1])
    out, bucket = tmp_path / "out", tmp_path / "bucket"
    ids = [run_id for run_id in reference if ".both.1." in run_id]
    driver = Driver(_command(config, cluster), {**sweep_env, **cluster.auth_env})

    def a_worker_run_in_its_pause():
        for run_id in ids:
            events = _events(out, run_id)
            trials = [e for e in events if e["event"] == "trial"]
            if trials and trials[-1]["node"] == worker.node_id and any(e["event"] == "epoch" for e in events) \
                    and stored_checkpoints(bucket, run_id):
                return run_id
        return None

    victim = _wait_for(a_worker_run_in_its_pause, driver, "run on the worker node stored its first epoch")
    # The epoch checkpoint is in the storage; the driver takes it in as the trial's latest while the run is still in
    # its pause (a node lost before that restarts the trial from zero, which is right, but not what this tests).
    time.sleep(2)
    killed = worker.kill()
    deadline = time.time() + 10
    while worker.pids() and time.time() < deadline:
        time.sleep(0.2)
    assert killed and not worker.pids(), "every process of the worker node is gone"
    assert driver.wait() == 0, driver.output()[-3000:]

    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 and {json.loads(line)["run_id"] for line in lines} == set(ids), "nothing lost or doubled"
    events = _events(out, victim)
    trials = [e for e in events if e["event"] == "trial"]
    assert [e["node"] for e in trials] == [worker.node_id, head.node_id]
    starts = [e for e in events if e["event"] == "start"]
    assert [(e["epoch"], e["step"], e["resumed"]) for e in starts] == [(0, 0, False), (1, STEPS_PER_EPOCH, True)]
    record = {r["run_id"]: r for r in load_results(out / "results.jsonl")}[victim]
    assert record["node"]["id"] == head.node_id
    assert {k: record[k] for k in COMPARED} == {k: reference[victim][k] for k in COMPARED}
    assert same_weights(trainable_state(final_checkpoint(bucket, victim)),
                        trainable_state(final_checkpoint(reference_folder / "bucket", victim)))
    retry = [(t, line) for t, line in driver.lines if f"retrying {victim}" in line]
    assert len(retry) == 1 and ("its Ray node was lost" in retry[0][1] or "became unreachable" in retry[0][1]), \
        driver.output()[-3000:]
    (other,) = [run_id for run_id in ids if run_id != victim]
    other_done = next(e["time"] for e in _events(out, other) if e["event"] == "done")
    kill = worker.killed_at
    print(f"[timeline] node lost at 0.0 s (SIGKILL of {len(killed)} processes); driver's retry line "
          f"+{retry[0][0] - kill:.1f} s; head's own run done +{other_done - kill:.1f} s; trial started on the head "
          f"+{trials[1]['time'] - kill:.1f} s; first step after the restart (epoch 1) +{starts[1]['time'] - kill:.1f} "
          f"s; run recorded +{next(e['time'] for e in events if e['event'] == 'done') - kill:.1f} s\n"
          f"[timeline] retry line: {retry[0][1]}")
