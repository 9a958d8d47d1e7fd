"""A sweep whose ``storage_path`` is an S3 bucket: a real S3 API on this machine (moto's server), not a folder.

Ray keeps the trials' epoch checkpoints in the bucket, each finished run's folder (the kept model with it) lands in
``<bucket>/sweeps/runs/<run_id>/``, and the URI's query (the endpoint) survives every path the sweep builds.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pet_lightning.sweeps.records import load_results
from tests.conftest import REPO_ROOT
from tests.sweeps.conftest import write_tiny_sweep

pytestmark = pytest.mark.slow
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
MOTO_SERVER = shutil.which("moto_server", path=str(Path(sys.executable).parent))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free port, stopped by its process id; yields ``host:port``."""
    if MOTO_SERVER is None:
        pytest.skip("moto's server is not installed (pip install -e '.[test]')")
    port = _free_port()
    server = subprocess.Popen([MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _bucket(endpoint: str, name: str):
    """A new bucket on the server and a pyarrow file system on it."""
    import os

    import pyarrow.fs

    os.environ.update(CREDENTIALS)
    filesystem = pyarrow.fs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1",
                                         allow_bucket_creation=True)
    filesystem.create_dir(name)
    return filesystem


def _files(filesystem, root: str) -> dict[str, int]:
    import pyarrow.fs

    found = filesystem.get_file_info(pyarrow.fs.FileSelector(root, recursive=True))
    return {info.path[len(root) + 1:]: info.size for info in found if info.type == pyarrow.fs.FileType.File}


def test_a_sweep_keeps_its_trial_state_and_finished_run_folders_in_an_s3_bucket(tmp_path, s3_endpoint, sweep_env,
                                                                                  tiny):
    filesystem = _bucket(s3_endpoint, "pet-sweeps")
    storage = f"s3://pet-sweeps/sweeps?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    config = write_tiny_sweep(tmp_path / "sweep.yaml", tmp_path / "out", seeds=[1], storage_path=storage)
    sweep = yaml.safe_load(config.read_text())
    sweep["base"]["model"]["backbone"] = tiny
    config.write_text(yaml.safe_dump(sweep), encoding="utf-8")

    done = subprocess.run([sys.executable, "cli.py", "sweep", "--config", str(config)], cwd=REPO_ROOT,
                          env={**sweep_env, **CREDENTIALS}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = load_results(tmp_path / "out" / "results.jsonl")
    assert len(records) == 2 and {r["status"] for r in records} == {"ok"}

    stored = _files(filesystem, "pet-sweeps/sweeps")
    assert not list((tmp_path / "out").glob("tune-*")), "Ray's trial state went to the bucket, not to out"
    for record in records:
        run_id, out = record["run_id"], tmp_path / "out"
        assert record["stored_at"] == storage.replace("/sweeps?", f"/sweeps/runs/{run_id}?")
        # The kept model, byte for byte, and the record as results.jsonl holds it.
        kept = out / record["checkpoint"]
        key = f"pet-sweeps/sweeps/{record['checkpoint']}"
        with filesystem.open_input_stream(key) as stream:
            assert stream.read() == kept.read_bytes()
        with filesystem.open_input_stream(f"pet-sweeps/sweeps/runs/{run_id}/record.json") as stream:
            assert json.loads(stream.read()) == record
        assert f"runs/{run_id}/predictions.csv" in stored
        # The trial's last epoch checkpoint (keep_checkpoints: true) in Ray's experiment folder.
        assert any(name.startswith("tune-") and f"/{run_id}/checkpoint_" in name and name.endswith("/epoch.ckpt")
                   for name in stored), sorted(stored)


def test_a_bucket_whose_endpoint_does_not_answer_fails_before_any_trial_in_one_line(tmp_path, sweep_env):
    storage = f"s3://pet-sweeps/sweeps?endpoint_override=127.0.0.1:{_free_port()}&scheme=http&region=us-east-1"
    config = write_tiny_sweep(tmp_path / "sweep.yaml", tmp_path / "out", seeds=[1], storage_path=storage)
    # The S3 client's own retries: about 12 s here.
    done = subprocess.run([sys.executable, "cli.py", "sweep", "--config", str(config)], cwd=REPO_ROOT,
                          env={**sweep_env, **CREDENTIALS}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: storage_path {storage}: cannot write there (") and \
        done.stderr.count("\n") == 1, done.stderr
    assert "Could not connect to server" in done.stderr and not (tmp_path / "out" / "runs").exists()
