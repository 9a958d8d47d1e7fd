"""Relative paths mean the folder the command started in, whatever the working directory is later
(pet_lightning/paths.py): a relative data root, then a change of directory, then a fit, a validate from a relative
checkpoint, and a sweep whose Ray trials start in folders of their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pet_lightning import paths
from pet_lightning.lightning_cli import absolute_config_args
from tests.conftest import REPO_ROOT


@pytest.fixture
def started_in(tmp_path, monkeypatch) -> Path:
    """This process runs as a command started in ``<tmp>/start``; the working directory is ``<tmp>/a/elsewhere``
    (a folder of another depth, so that no relative path means the same file from both)."""
    start, elsewhere = tmp_path / "start", tmp_path / "a" / "elsewhere"
    start.mkdir()
    elsewhere.mkdir(parents=True)
    monkeypatch.setattr(paths, "START_DIR", start)
    monkeypatch.chdir(elsewhere)
    return start


def test_relative_paths_are_read_against_the_start_folder_not_the_current_one(started_in):
    assert Path.cwd() != started_in
    assert paths.from_start("data/x") == str(started_in / "data" / "x")
    assert paths.from_start(started_in.parent / "abs") == str(started_in.parent / "abs")
    assert paths.from_start("s3://bucket/runs") == "s3://bucket/runs"
    assert paths.from_start("~/x") == str(Path.home() / "x")


def test_a_relative_data_root_set_after_import_is_read_against_the_start_folder(started_in, monkeypatch):
    from pet_lightning.data import TaskDataModule
    from pet_lightning.data.readers import default_data_dir

    monkeypatch.setenv("PET_DATA_DIR", "data")
    assert default_data_dir() == str(started_in / "data")
    assert TaskDataModule(task="rte").data_dir == str(started_in / "data")
    assert TaskDataModule(task="rte", data_dir="../other").data_dir == str(started_in / ".." / "other")
    paths.pin_environment()  # what the sweep runner does before Ray starts its workers
    assert os.environ["PET_DATA_DIR"] == str(started_in / "data")


def test_config_flags_name_files_of_the_start_folder(started_in):
    (started_in / "configs").mkdir()
    (started_in / "configs" / "a.yaml").write_text("seed_everything: 1\n")
    absolute = str(started_in / "configs" / "a.yaml")
    assert absolute_config_args(["fit", "--config", "configs/a.yaml", "--x", "configs/a.yaml"]) == [
        "fit", "--config", absolute, "--x", "configs/a.yaml"]
    assert absolute_config_args(["fit", "--config=configs/a.yaml"]) == ["fit", f"--config={absolute}"]
    # Neither a file of the start folder: left as typed, for the parser's own message (or inline YAML).
    assert absolute_config_args(["fit", "--config", "configs/none.yaml", "--config", "{a: 1}"]) == [
        "fit", "--config", "configs/none.yaml", "--config", "{a: 1}"]


def test_a_relative_local_backbone_folder_is_found_from_another_folder(started_in):
    from pet_lightning.backbones import resolve_backbone

    (started_in / "models" / "tiny").mkdir(parents=True)
    assert resolve_backbone("models/tiny") == str(started_in / "models" / "tiny")
    assert resolve_backbone("bert-base-uncased") == "bert-base-uncased"  # no such folder: a hub name


FIT_ELSEWHERE = """
import os, sys
from pet_lightning.cli import main
from pet_lightning.lightning_cli import run_lightning

os.chdir(sys.argv[1])  # after the import, as a test, a callback or a library would
common = ["--config", "configs/quickstart.yaml", "--trainer.logger=false", "--trainer.precision=32-true",
          "--data.init_args.max_length=32", "--data.init_args.batch_size=4", "--data.init_args.train_subset=8"]
fit = run_lightning(["fit", *common, "--trainer.fast_dev_run=true", "--trainer.default_root_dir=runs"])
codes = [0 if fit.trainer.global_step == 1 else 1,
         main(["validate", *common, "--model.strategy=frozen", "--trainer.limit_val_batches=1",
               "--ckpt_path", "checkpoints/frozen.ckpt"])]
inherited = os.environ["PET_DATA_DIR"]
data_dir = os.environ.pop("PET_DATA_DIR")
codes.append(main(["fit", *common, "--trainer.fast_dev_run=true", "--data.init_args.data_dir", sys.argv[2]]))
print("CODES", *codes, inherited, fit.trainer.default_root_dir)
"""


@pytest.mark.slow
def test_a_fit_and_a_validate_started_with_relative_paths_survive_a_change_of_directory(data_dir, tmp_path):
    from tests.helpers.trainers import unfitted_checkpoint

    start, elsewhere = tmp_path / "start", tmp_path / "a" / "elsewhere"  # another depth: see started_in
    (start / "configs").mkdir(parents=True)
    (start / "checkpoints").mkdir()
    elsewhere.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "configs" / "quickstart.yaml", start / "configs")
    torch.save(unfitted_checkpoint("frozen"), start / "checkpoints" / "frozen.ckpt")
    relative_data = os.path.relpath(data_dir, start)
    env = {**os.environ, "PET_DATA_DIR": relative_data, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", FIT_ELSEWHERE, str(elsewhere), relative_data], cwd=start, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("CODES ")]
    # The relative root was made absolute at import, so processes started from this one inherit the same folder.
    assert line.split() == ["CODES", "0", "0", "0", str(start / relative_data), str(start / "runs")], (
        result.stderr[-3000:])
    assert "missing data file" not in result.stderr


@pytest.mark.slow
def test_a_ray_trial_gets_the_folders_of_the_start_folder(data_dir, started_in, tiny, monkeypatch):
    from pet_lightning.sweeps.records import load_results
    from pet_lightning.sweeps.runner import main as sweep_main
    from tests.helpers.backbones import copy_backbone

    copy_backbone(tiny, started_in / "tiny")  # named "tiny", relative to the start folder
    relative_data = os.path.relpath(data_dir, started_in)
    base = {"trainer": {"max_epochs": 1, "precision": "32-true", "num_sanity_val_steps": 0},
            "model": {"backbone": "tiny"},
            "data": {"init_args": {"max_length": 32, "train_subset": 16, "batch_size": 8, "eval_batch_size": 64}}}
    sweep = {"name": "rel", "out": "out", "tasks": ["cb"], "seeds": [1], "wandb": False, "cpus_per_trial": 1,
             "max_concurrent_trials": 2, "max_failures": 0, "select": {"monitor": "val/loss", "patience": None},
             "base": base,
             # One run names its data root in its config, the other reads PET_DATA_DIR: both relative.
             "methods": {"frozen": {"overrides": {"data": {"init_args": {"data_dir": relative_data}}}},
                         "bitfit": {"overrides": {"model": {"learning_rate": 1.0e-3}}}}}
    (started_in / "sweep_rel.yaml").write_text(yaml.safe_dump(sweep), encoding="utf-8")
    monkeypatch.setenv("PET_DATA_DIR", relative_data)
    monkeypatch.setenv("WANDB_MODE", "disabled")

    assert sweep_main(["--config", "sweep_rel.yaml"]) == 0

    records = {r["method"]: r for r in load_results(started_in / "out" / "results.jsonl")}
    assert set(records) == {"frozen", "bitfit"} and not Path("out").exists()
    assert os.environ["PET_DATA_DIR"] == str(started_in / relative_data)
    # Records name their files relative to the folder of results.jsonl (no machine's absolute paths).
    assert not Path(records["frozen"]["config_path"]).is_absolute()
    written = yaml.safe_load((started_in / "out" / records["frozen"]["config_path"]).read_text())
    assert written["data"]["init_args"]["data_dir"] == str(started_in / relative_data)
