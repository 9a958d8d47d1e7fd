"""The figure a sweep records is what its kept checkpoint gives in a fresh ``python cli.py test`` process, for a
single-stage method (BitFit) and a two-stage one (LP-FT: head first, then full fine-tuning)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from pet_lightning.sweeps.records import load_results
from pet_lightning.sweeps.runner import main as sweep_main
from tests.conftest import REPO_ROOT
from tests.sweeps.conftest import write_tiny_sweep

pytestmark = pytest.mark.slow

LP_FT = {
    "strategy": "frozen",
    "overrides": {
        "model": {"learning_rate": 1.0e-3},
        "trainer": {"callbacks": [{
            "class_path": "pet_lightning.callbacks.TwoStageTraining",
            "init_args": {"stage2_strategy": "full", "stage1_epochs": 1, "learning_rate": 1.0e-5,
                          "warmup_ratio": 0.1},
        }]},
    },
}


def _test_metrics(run_dir: Path) -> dict[str, float]:
    """The test metrics of the newest CSV log of the run (the fresh process logs a new version)."""
    newest = max(run_dir.glob("csv/version_*/metrics.csv"), key=lambda path: int(path.parent.name.split("_")[1]))
    with open(newest) as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("test/headline")]
    assert len(rows) == 1, newest
    return {key: float(value) for key, value in rows[0].items() if key.startswith("test/") and value}


def test_recorded_figures_equal_a_fresh_process_evaluation_of_the_kept_checkpoint(tmp_path, sweep_env, monkeypatch):
    out = tmp_path / "out"
    config = write_tiny_sweep(tmp_path / "sweep_fresh.yaml", out, seeds=[1],
                              methods={"bitfit": {"overrides": {"model": {"learning_rate": 1.0e-3}}}, "lp_ft": LP_FT})
    for key in ("PET_DATA_DIR", "WANDB_MODE"):
        monkeypatch.setenv(key, sweep_env[key])
    assert sweep_main(["--config", str(config)]) == 0
    records = {r["method"]: r for r in load_results(out / "results.jsonl")}
    assert set(records) == {"bitfit", "lp_ft"}
    # LP-FT selects among stage-2 epochs only: its kept checkpoint is the last (only) stage-2 epoch.
    assert records["lp_ft"]["best_epoch"] == 1
    for method, record in records.items():
        run_dir = out / "runs" / record["run_id"]
        kept = out / record["checkpoint"]  # relative to the folder of results.jsonl
        assert kept.is_file() and kept.parent == run_dir / "checkpoints"
        done = subprocess.run(
            [sys.executable, "cli.py", "test", "--config", str(run_dir / "config.yaml"), "--ckpt_path", str(kept)],
            cwd=REPO_ROOT, env=sweep_env, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        fresh = _test_metrics(run_dir)
        assert {key.removeprefix("test/"): value for key, value in fresh.items()} == record["report"], method
