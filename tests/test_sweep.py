"""Sweeps: planning, config merging, atomic results, claims, and a real killed-then-resumed sweep."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pet_lightning import sweep as S
from pet_lightning.seeds import STUDY_SEEDS
from tests.conftest import REPO_ROOT


def _write_sweep(path: Path, **settings) -> Path:
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def test_plan_covers_tasks_methods_modes_and_the_20_study_seeds(tmp_path):
    sweep = S.SweepConfig.from_file(_write_sweep(tmp_path / "sweep_x.yaml", tasks=["rte", "cb"],
                                                 methods=["full", "lora"], seed_modes=["both", "order"]))
    runs = S.plan_runs(sweep)
    assert sweep.name == "x" and sweep.out == "runs/sweeps/x"
    assert len(runs) == 2 * 2 * 2 * 20 and len({r.run_id for r in runs}) == len(runs)
    assert sorted({r.seed for r in runs}) == sorted(STUDY_SEEDS)
    order_runs = [r for r in runs if r.seed_mode == "order"]
    assert all(r.init_seed == 1111 and r.order_seed == r.seed for r in order_runs)
    assert [r.run_id for r in S.plan_runs(sweep)] == [r.run_id for r in runs], "run ids must be stable"
    # Seed-major: the first runs give every method one seed.
    assert {(r.task, r.method) for r in runs[:8]} == {(t, m) for t in ("rte", "cb") for m in ("full", "lora")}
    cb = next(r for r in runs if r.task == "cb")
    assert cb.config["data"]["class_path"] == "pet_lightning.data.SuperGlueDataModule"


def test_config_precedence_and_selection_callbacks(tmp_path):
    method_file = tmp_path / "rte_lora.yaml"
    method_file.write_text(yaml.safe_dump({
        "model": {"learning_rate": 5e-4, "strategy": {"name": "lora", "r": 4}, "task": "cola"},
        "trainer": {"max_epochs": 3, "callbacks": [
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"monitor": "val/headline"}},
            {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}]},
    }))
    path = _write_sweep(
        tmp_path / "sweep_p.yaml", tasks=["rte"], seeds=[3], protocol="train_holdout",
        select={"monitor": "val/headline", "patience": 4}, wandb={"project": "p"},
        base={"trainer": {"max_epochs": 9}, "model": {"learning_rate": 1e-5}},
        methods={"lora": {"config": str(tmp_path / "{task}_{method}.yaml"),
                          "overrides": {"trainer": {"max_epochs": 5}}}},
        task_overrides={"rte": {"data": {"init_args": {"max_length": 64}}}},
    )
    sweep = S.SweepConfig.from_file(path)
    (run,) = S.plan_runs(sweep)
    config = S.full_config(sweep, run, tmp_path / "run")
    assert config["model"]["learning_rate"] == 5e-4 and isinstance(config["model"]["learning_rate"], float)
    assert config["model"]["strategy"] == {"name": "lora", "r": 4} and "task" not in config["model"]
    assert config["trainer"]["max_epochs"] == 5
    assert config["data"]["init_args"] == {"task": "rte", "protocol": "train_holdout", "max_length": 64,
                                           "order_seed": 3}
    assert config["model"]["init_seed"] == 3 and config["seed_everything"] == 3
    callbacks = {cb["class_path"].rsplit(".", 1)[1]: cb.get("init_args", {}) for cb in config["trainer"]["callbacks"]}
    assert set(callbacks) == {"LearningRateMonitor", "ModelCheckpoint", "EarlyStopping"}
    assert callbacks["ModelCheckpoint"]["monitor"] == "val/headline" and callbacks["ModelCheckpoint"]["mode"] == "max"
    assert callbacks["EarlyStopping"] == {"monitor": "val/headline", "mode": "max", "patience": 4}
    wandb = next(lg for lg in config["trainer"]["logger"] if lg["class_path"].endswith("WandbLogger"))["init_args"]
    assert wandb["group"] == "p" and wandb["job_type"] == "lora" and wandb["project"] == "p"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tasks": ["rte"], "methods": ["full"], "seeds": 30}, "seeds=30: use 1..20"),
        ({"tasks": ["rte"], "methods": ["full"], "select": {"monitor": "test/accuracy"}}, "select.monitor"),
        ({"tasks": ["rte"], "methods": ["full"], "protocl": "x"}, "unknown sweep setting(s) ['protocl']"),
        ({"tasks": ["nope"], "methods": ["full"]}, "unknown task 'nope'"),
        ({"tasks": ["rte"], "methods": ["full"], "seed_modes": ["data"]}, "unknown seed mode(s) ['data']"),
    ],
)
def test_bad_sweep_files_are_one_line_errors(tmp_path, settings, message, capsys):
    path = _write_sweep(tmp_path / "sweep_bad.yaml", **settings)
    assert S.main(["--config", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def _append_many(path: str, worker: int, count: int) -> None:
    for i in range(count):
        S.append_result(Path(path), {"run_id": f"w{worker}-{i}", "payload": "x" * 2000})


def test_concurrent_appends_never_lose_or_corrupt_lines(tmp_path):
    path = tmp_path / "results.jsonl"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(str(path), w, 25)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    records = S.load_results(path)
    assert len(records) == 100 and len({r["run_id"] for r in records}) == 100
    assert not list(tmp_path.glob(".*.tmp")), "temporary files must be renamed away"


def test_claims_of_dead_processes_are_taken_over(tmp_path):
    claims = S.Claims(tmp_path / "claims", stale_after_s=3600)
    assert claims.try_claim("a") and not claims.try_claim("a")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claims.path("b").write_text(json.dumps({"host": claims.host, "pid": dead.pid, "since": 0}))
    assert claims.try_claim("b")
    claims.path("c").write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": 0}))
    assert not claims.try_claim("c")
    os.utime(claims.path("c"), (0, 0))  # its heartbeat stopped long ago
    assert claims.try_claim("c")


def _fake_execute(sweep, run):
    time.sleep(0.05)
    return {"run_id": run.run_id, "pid": os.getpid()}


def _worker(config: str) -> None:
    S.execute = _fake_execute
    sweep = S.SweepConfig.from_file(config)
    S.work(sweep, S.plan_runs(sweep))


def test_parallel_workers_run_every_run_exactly_once(tmp_path):
    path = _write_sweep(tmp_path / "sweep_par.yaml", tasks=["rte"], methods=["full", "frozen"], seeds=4,
                        out=str(tmp_path / "out"))
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_worker, args=(str(path),)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    records = S.load_results(tmp_path / "out" / "results.jsonl")
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8 and len(records) == 8
    assert not list((tmp_path / "out" / "claims").iterdir())


def _tiny_sweep(tmp_path: Path) -> Path:
    return _write_sweep(
        tmp_path / "sweep_tiny.yaml", name="tiny", tasks=["rte"], methods=["frozen"], seeds=[1, 2, 3],
        out=str(tmp_path / "out"), wandb=False, keep_checkpoints=True,
        select={"monitor": "val/loss", "patience": None},
        base={
            "trainer": {"max_epochs": 2, "precision": "32-true", "limit_val_batches": 1, "limit_test_batches": 1,
                        "num_sanity_val_steps": 0},
            "model": {"learning_rate": 1e-2},
            "data": {"init_args": {"max_length": 32, "train_subset": 8, "batch_size": 4, "eval_batch_size": 8}},
        },
    )


def _sweep_env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def test_killed_sweep_resumes_without_redoing_finished_runs(tmp_path, data_dir):
    config = _tiny_sweep(tmp_path)
    results = tmp_path / "out" / "results.jsonl"
    command = [sys.executable, "cli.py", "sweep", "--config", str(config)]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=_sweep_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (results.exists() and results.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "the first run did not finish in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = results.read_text().splitlines()
    assert 1 <= len(first) < 3
    finished = [json.loads(line)["run_id"] for line in first]

    resumed = subprocess.run(command, cwd=REPO_ROOT, env=_sweep_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"{len(first)} already finished" in resumed.stdout
    assert not any(f"start {run_id}" in resumed.stdout for run_id in finished)
    lines = results.read_text().splitlines()
    assert lines[: len(first)] == first, "finished runs must not be rewritten"
    records = S.load_results(results)
    assert sorted(r["seed"] for r in records) == [1, 2, 3] and len(lines) == 3

    # Selection happened on the selection split: the kept checkpoint is the epoch with the lowest val/loss, and
    # the reporting split was evaluated once, at that checkpoint.
    record = records[-1]
    with open(next((tmp_path / "out" / "runs" / record["run_id"]).rglob("metrics.csv"))) as handle:
        metrics = list(csv.DictReader(handle))
    val = [(float(r["val/loss"]), int(r["step"])) for r in metrics if r.get("val/loss")]
    assert len(val) == 2 and record["best_selection"] == pytest.approx(min(val)[0])
    assert record["best_step"] == min(val)[1] + 1
    tests = [r for r in metrics if r.get("test/accuracy")]
    assert len(tests) == 1 and float(tests[0]["test/accuracy"]) == pytest.approx(record["score"])
    assert record["protocol"] == "dev_split" and record["leaky"] is False and record["steps"] == 4
    assert record["train_examples"] == 8 and record["selection_examples"] == 138
