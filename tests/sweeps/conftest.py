"""A tiny real sweep (CB, BitFit and frozen, 32 training examples, 2 epochs of 4 steps) and its runs executed one by
one in this process, the reference that Ray trials must reproduce."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

STEPS_PER_EPOCH = 4  # 32 examples / batch 8


def write_tiny_sweep(path: Path, out: Path, **settings: Any) -> Path:
    sweep = {
        "name": "tiny", "out": str(out), "tasks": ["cb"],
        "methods": {"bitfit": {"overrides": {"model": {"learning_rate": 1.0e-3}}},
                    "frozen": {"overrides": {"model": {"learning_rate": 1.0e-2}}}},
        "seeds": [1, 2], "select": {"monitor": "val/loss", "patience": None}, "wandb": False,
        "keep_checkpoints": True, "cpus_per_trial": 1, "max_concurrent_trials": 2, "max_failures": 1,
        "base": {
            # Dropout on, so that a resume that lost the dropout stream would show in the weights.
            "trainer": {"max_epochs": 2, "precision": "32-true", "num_sanity_val_steps": 0, "log_every_n_steps": 1},
            "model": {"hidden_dropout": 0.1},
            "data": {"init_args": {"max_length": 64, "train_subset": 32, "batch_size": 8, "eval_batch_size": 32}},
        },
    }
    sweep.update(settings)
    path.write_text(yaml.safe_dump(sweep), encoding="utf-8")
    return path


def stored_checkpoints(storage: Path, run_id: str) -> list[Path]:
    """The run's epoch checkpoints Ray stored under ``storage`` (its ``storage_path``), oldest first."""
    return sorted(storage.glob(f"tune-*/{run_id}/checkpoint_*/epoch.ckpt"))


def final_checkpoint(storage: Path, run_id: str) -> Path:
    """The run's last stored epoch checkpoint."""
    (path,) = stored_checkpoints(storage, run_id)[-1:]
    return path


def trainable_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.fixture(scope="session")
def sweep_env(data_dir) -> dict[str, str]:
    return {**os.environ, "PET_DATA_DIR": data_dir, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def reference_runs(tmp_path_factory, data_dir) -> dict[str, dict[str, Any]]:
    """run_id -> {"record", "final": trainable tensors after the last epoch, "log": its progress.jsonl}, each run
    trained here, one by one."""
    from pet_lightning.sweeps.plan import SweepConfig, plan_runs
    from pet_lightning.sweeps.trainable import PROGRESS_FILE, RESUME_FILE, execute

    folder = tmp_path_factory.mktemp("reference")
    sweep = SweepConfig.from_file(write_tiny_sweep(folder / "sweep_tiny.yaml", folder / "out"))
    threads = torch.get_num_threads()
    results = {}
    try:
        for run in plan_runs(sweep):
            last = folder / "last" / run.run_id / RESUME_FILE
            last.parent.mkdir(parents=True)

            def keep_last(metrics: dict[str, Any], saved: Path, last: Path = last) -> None:
                shutil.copyfile(saved / RESUME_FILE, last)

            record = execute(sweep, run, threads=int(sweep.cpus_per_trial), report=keep_last)
            results[run.run_id] = {"record": record, "final": trainable_state(last),
                                   "log": sweep.run_dir(run.run_id) / PROGRESS_FILE}
    finally:
        torch.set_num_threads(threads)
    return results
