"""Under DDP, ReportPredictions gathers every process's shard: the file equals the single-process one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _predict(devices: int, backbone: str, out, data_dir: str) -> bytes:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PET_DATA_DIR": data_dir}
    result = subprocess.run([sys.executable, "-m", "tests.scripts.report_predictions_ddp", str(devices), backbone,
                             str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out.read_bytes()


def test_two_processes_write_the_single_process_file(tmp_path, data_dir, tiny):
    from pet_lightning.reports.examples import read_predictions

    single = _predict(1, tiny, tmp_path / "single.csv", data_dir)
    assert _predict(2, tiny, tmp_path / "ddp.csv", data_dir) == single
    rows = read_predictions(tmp_path / "single.csv")[""]
    # Every reported example once (an odd count: a padding sampler would repeat one).
    assert len(rows["idx"]) == len(set(rows["idx"].tolist())) and len(rows["idx"]) % 2 == 1
