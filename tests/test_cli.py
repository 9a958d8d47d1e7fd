"""The command line, run as a user would run it (the quickstart's own run, the per-task runs and bad input are in
``tests/test_first_minute.py``)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT
from tests.helpers.trainers import real_fit_overrides


def _cli(*args: str, env_extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", **(env_extra or {})}
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_print_config_resolves_links_and_interpolation(tmp_path):
    result = _cli("fit", "--config", "configs/quickstart.yaml", "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_path: pet_lightning.data.TaskDataModule" in result.stdout
    assert "backbone: minilm" in result.stdout


def test_missing_data_root_exits_with_the_fix(tmp_path):
    result = _cli("fit", "--config", "configs/quickstart.yaml", "--trainer.fast_dev_run=true",
                  f"--data.init_args.data_dir={tmp_path}")
    assert result.returncode == 2
    assert "missing data file" in result.stderr and "PET_DATA_DIR" in result.stderr


def test_fit_then_validate_and_test_from_the_checkpoint(data_dir, tmp_path):
    common = ["--config", "configs/quickstart.yaml", "--trainer.logger=false",
              f"--trainer.default_root_dir={tmp_path}", "--model.strategy=frozen", "--model.learning_rate=1e-3",
              "--data.init_args.train_subset=32",
              "--data.init_args.max_length=32", "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2",
              *real_fit_overrides()]
    fit = _cli("fit", *common, "--trainer.max_steps=2", "--trainer.callbacks=[]",
               "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
               f"--trainer.callbacks.dirpath={tmp_path}/ckpt")
    assert fit.returncode == 0, fit.stderr[-3000:]
    (checkpoint,) = (tmp_path / "ckpt").glob("*.ckpt")
    assert checkpoint.stat().st_size < 100_000  # frozen: the head only
    validate = _cli("validate", *common, f"--ckpt_path={checkpoint}")
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert "val/accuracy" in validate.stdout
    test = _cli("test", *common, f"--ckpt_path={checkpoint}")
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test/accuracy" in test.stdout
