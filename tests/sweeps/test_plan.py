"""Sweep planning without Ray: grid counts, stable ids, config precedence, hashes, engine settings, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pet_lightning.paths import start_dir
from pet_lightning.seeds import STUDY_SEEDS
from pet_lightning.sweeps import plan as P
from pet_lightning.sweeps.runner import main as sweep_main


def _write_sweep(path: Path, **settings) -> Path:
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def test_plan_covers_tasks_methods_modes_and_the_20_study_seeds(tmp_path):
    sweep = P.SweepConfig.from_file(_write_sweep(tmp_path / "sweep_x.yaml", tasks=["rte", "cb"],
                                                 methods=["full", "lora"], seed_modes=["both", "order"]))
    runs = P.plan_runs(sweep)
    assert sweep.name == "x" and sweep.out == str(start_dir() / "runs/sweeps/x")
    assert len(runs) == 2 * 2 * 2 * 20 and len({r.run_id for r in runs}) == len(runs)
    assert sorted({r.seed for r in runs}) == sorted(STUDY_SEEDS)
    order_runs = [r for r in runs if r.seed_mode == "order"]
    assert all(r.init_seed == 1111 and r.order_seed == r.seed for r in order_runs)
    assert [r.run_id for r in P.plan_runs(sweep)] == [r.run_id for r in runs], "run ids must be stable"
    # Seed-major: the first runs give every method one seed.
    assert {(r.task, r.method) for r in runs[:8]} == {(t, m) for t in ("rte", "cb") for m in ("full", "lora")}
    cb = next(r for r in runs if r.task == "cb")
    assert cb.config["data"]["class_path"] == "pet_lightning.data.SuperGlueDataModule"
    assert len(P.select_runs(runs, {"task": ["cb"], "seed": [str(STUDY_SEEDS[0])]})) == 2 * 2


def test_config_hash_ignores_seeds_and_run_hash_does_not(tmp_path):
    sweep = P.SweepConfig.from_file(_write_sweep(tmp_path / "sweep_h.yaml", tasks=["rte"], methods=["full", "lora"],
                                                 seeds=[1, 2, 3], seed_modes=["both", "init"]))
    runs = P.plan_runs(sweep)
    by_method = {m: [r for r in runs if r.method == m] for m in ("full", "lora")}
    assert all(len({r.config_hash for r in group}) == 1 for group in by_method.values())
    assert by_method["full"][0].config_hash != by_method["lora"][0].config_hash
    assert len({r.run_hash for r in runs}) == len(runs)
    assert all(r.run_id.endswith(f".{r.run_hash}") for r in runs)
    # Engine settings say where runs execute, not what they are: ids and hashes do not move with them.
    engine = P.SweepConfig.from_file(_write_sweep(
        tmp_path / "sweep_h.yaml", tasks=["rte"], methods=["full", "lora"], seeds=[1, 2, 3],
        seed_modes=["both", "init"],
        cpus_per_trial=4, gpus_per_trial=0.25, max_concurrent_trials=3, max_failures=5, storage_path="/tmp/s"))
    assert [(r.run_id, r.config_hash) for r in P.plan_runs(engine)] == [(r.run_id, r.config_hash) for r in runs]
    assert P.plan_digest(engine, runs) != P.plan_digest(sweep, runs), "changed retries name a new experiment"


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
    sweep = P.SweepConfig.from_file(path)
    (run,) = P.plan_runs(sweep)
    config = P.full_config(sweep, run, tmp_path / "run")
    assert config["model"]["learning_rate"] == 5e-4 and isinstance(config["model"]["learning_rate"], float)
    assert config["model"]["strategy"] == {"name": "lora", "r": 4} and "task" not in config["model"]
    assert config["trainer"]["max_epochs"] == 5
    assert config["data"]["init_args"] == {"task": "rte", "protocol": "train_holdout", "max_length": 64,
                                           "order_seed": 3}
    assert config["model"]["init_seed"] == 3 and config["seed_everything"] == 3
    callbacks = {cb["class_path"].rsplit(".", 1)[1]: cb.get("init_args", {}) for cb in config["trainer"]["callbacks"]}
    # The method file's own ModelCheckpoint is replaced by the stage-aware selection callbacks.
    assert set(callbacks) == {"LearningRateMonitor", "SelectionCheckpoint", "SelectionEarlyStopping",
                              "ResumeCheckpoints"}
    assert callbacks["ResumeCheckpoints"] == {"auto_resume": False}
    kept = callbacks["SelectionCheckpoint"]
    assert kept["monitor"] == "val/headline" and kept["mode"] == "max" and kept["save_weights_only"] is True
    assert kept["dirpath"] == str(tmp_path / "run" / "checkpoints")
    assert callbacks["SelectionEarlyStopping"] == {"monitor": "val/headline", "mode": "max", "patience": 4}
    wandb = next(lg for lg in config["trainer"]["logger"] if lg["class_path"].endswith("WandbLogger"))["init_args"]
    assert wandb["group"] == "p" and wandb["job_type"] == "lora" and wandb["project"] == "p"
    assert wandb["name"] == run.run_id


def test_deep_merge_replaces_lists_and_keeps_the_inputs():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    merged = P.deep_merge(base, {"a": {"c": [3]}, "e": {"f": 2}})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": 1, "e": {"f": 2}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_storage_path_defaults_to_out_and_new_settings_are_read(tmp_path):
    sweep = P.SweepConfig.from_file(_write_sweep(
        tmp_path / "sweep_e.yaml", tasks=["rte"], methods=["full"], out=str(tmp_path / "o"), gpus_per_trial=0.25,
        max_failures=0, address="auto"))
    assert sweep.storage_path is None and sweep.gpus_per_trial == 0.25 and sweep.max_failures == 0
    from pet_lightning.sweeps.runner import resolve_address
    from pet_lightning.sweeps.storage import storage_root

    assert storage_root(sweep) == str(tmp_path / "o")
    assert resolve_address(None, sweep) == "auto" and resolve_address("10.0.0.1:6379", sweep) == "10.0.0.1:6379"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tasks": ["rte"], "methods": ["full"], "seeds": 30}, "seeds=30: use 1..20"),
        ({"tasks": ["rte"], "methods": ["full"], "select": {"monitor": "test/accuracy"}}, "select.monitor"),
        ({"tasks": ["rte"], "methods": ["full"], "protocl": "x"}, "unknown sweep setting(s) ['protocl']"),
        ({"tasks": ["nope"], "methods": ["full"]}, "unknown task 'nope'"),
        ({"tasks": ["rte"], "methods": ["full"], "seed_modes": ["data"]}, "unknown seed mode(s) ['data']"),
        ({"tasks": ["rte"], "methods": ["full"], "stale_after_s": 60}, "`stale_after_s` is no longer a sweep setting"),
        ({"tasks": ["rte"], "methods": ["full"], "workers": 2}, "unknown sweep setting(s) ['workers']"),
        ({"tasks": ["rte"], "methods": ["full"], "gpus_per_trial": -1}, "gpus_per_trial=-1"),
        ({"tasks": ["rte"], "methods": ["full"], "gpus_per_trial": 1.5}, "a sweep run trains on at most one GPU"),
        ({"tasks": ["rte"], "methods": ["full"], "cpus_per_trial": 0}, "cpus_per_trial=0"),
        ({"tasks": ["rte"], "methods": ["full"], "max_concurrent_trials": 0}, "max_concurrent_trials=0"),
    ],
)
def test_bad_sweep_files_are_one_line_errors(tmp_path, settings, message, capsys):
    path = _write_sweep(tmp_path / "sweep_bad.yaml", **settings)
    assert sweep_main(["--config", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_dry_run_lists_states_without_starting_ray(tmp_path, capsys):
    out = tmp_path / "o"
    path = _write_sweep(tmp_path / "sweep_d.yaml", tasks=["rte"], methods=["full"], seeds=3, out=str(out))
    runs = P.plan_runs(P.SweepConfig.from_file(path))
    out.mkdir()
    (out / "results.jsonl").write_text(
        f'{{"run_id": "{runs[0].run_id}", "status": "ok"}}\n{{"run_id": "{runs[1].run_id}", "status": "failed"}}\n')
    assert sweep_main(["--config", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["finished", "failed", "pending"]


def test_sweep_files_in_the_repo_plan(in_repo):
    root = in_repo
    for path in sorted((root / "configs" / "revisiting").glob("sweep_*.yaml")):
        sweep = P.SweepConfig.from_file(path)
        runs = P.plan_runs(sweep)
        assert len(runs) == len(sweep.tasks) * len(sweep.methods) * len(sweep.seeds) * len(sweep.seed_modes)
