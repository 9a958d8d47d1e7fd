"""A finished run's folder in ``storage_path`` (a URI or a folder other than ``out``) and back on the driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pet_lightning.sweeps.files import SweepError
from pet_lightning.sweeps.plan import SweepConfig
from pet_lightning.sweeps.storage import (
    STORAGE_MARK,
    check_storage_seen,
    fetch_run_folder,
    mark_storage,
    store_run_folder,
    stored_run_folder,
)

RUN_ID = "cb.bitfit.both.1.abcdef12"


def _sweep(out: Path, storage: str | None) -> SweepConfig:
    return SweepConfig(name="s", tasks=["cb"], methods={"bitfit": {}}, out=str(out), storage_path=storage,
                       wandb=False)


def _run_folder(run_dir: Path) -> dict[str, bytes]:
    """A finished run's folder as the trainable leaves it: what is stored, and the resume state that is not."""
    files = {"config.yaml": b"seed: 1\n", "predictions.csv": b"idx,label,pred\n0,1,1\n", "progress.jsonl": b"{}\n",
             "record.json": json.dumps({"run_id": RUN_ID}).encode(),
             "checkpoints/best-epoch=1-step=8.ckpt": bytes(range(256)) * 64}
    for name, content in {**files, "tune_resume/epoch.ckpt": b"resume", "resume/epoch.ckpt": b"resume"}.items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_bytes(content)
    return files


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_storage_gets_a_run_folder_only_when_it_is_not_out(tmp_path):
    assert stored_run_folder(_sweep(tmp_path / "out", None), RUN_ID) is None
    assert stored_run_folder(_sweep(tmp_path / "out", str(tmp_path / "out")), RUN_ID) is None
    assert stored_run_folder(_sweep(tmp_path / "out", f"file://{tmp_path}/bucket/"), RUN_ID) == \
        f"file://{tmp_path}/bucket/runs/{RUN_ID}"
    assert stored_run_folder(_sweep(tmp_path / "out", str(tmp_path / "shared")), RUN_ID) == \
        f"{tmp_path}/shared/runs/{RUN_ID}"


@pytest.mark.parametrize("uri", [True, False], ids=["file-uri", "shared-folder"])
def test_a_stored_run_folder_holds_the_kept_model_and_the_driver_fetches_all_but_checkpoints(tmp_path, uri):
    run_dir = tmp_path / "worker" / RUN_ID
    files = _run_folder(run_dir)
    target = f"file://{tmp_path}/bucket/runs/{RUN_ID}" if uri else f"{tmp_path}/bucket/runs/{RUN_ID}"
    store_run_folder(run_dir, target)
    assert _tree(tmp_path / "bucket" / "runs" / RUN_ID) == files, "everything but the resume state, byte for byte"

    driver_dir = tmp_path / "driver" / RUN_ID
    assert fetch_run_folder({"run_id": RUN_ID, "stored_at": target}, driver_dir)
    assert _tree(driver_dir) == {k: v for k, v in files.items() if not k.startswith("checkpoints/")}
    assert not fetch_run_folder({"run_id": RUN_ID, "stored_at": target}, driver_dir), "a local folder is kept"
    assert not fetch_run_folder({"run_id": RUN_ID}, tmp_path / "elsewhere"), "no stored_at: nothing to fetch"


def test_a_storage_that_refuses_the_copy_or_the_fetch_fails_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    _run_folder(run_dir)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the bucket's folder should be")
    with pytest.raises(SweepError) as err:
        store_run_folder(run_dir, f"file://{blocker}/runs/{RUN_ID}")
    assert str(err.value).startswith(f"could not copy the finished run folder {run_dir} to file://{blocker}")
    assert "\n" not in str(err.value)
    with pytest.raises(SweepError) as err:
        fetch_run_folder({"run_id": RUN_ID, "stored_at": f"file://{blocker}/runs/{RUN_ID}"}, tmp_path / "d")
    assert str(err.value).startswith(f"run {RUN_ID}: could not fetch its folder from file://{blocker}")
    assert "\n" not in str(err.value)


def test_a_trial_that_does_not_see_the_drivers_mark_fails_in_one_line(tmp_path):
    driver_side = str(tmp_path / "driver" / "tune-s-1234")
    mark = mark_storage(driver_side)
    check_storage_seen(driver_side, mark, node="10.0.0.1")  # the same folder: seen
    check_storage_seen(f"file://{driver_side}", mark, node="10.0.0.1")  # the same folder as a URI
    # A node whose storage_path is a folder of its own disk: the mark is not there.
    with pytest.raises(SweepError) as err:
        check_storage_seen(str(tmp_path / "node" / "tune-s-1234"), mark, node="10.0.0.2")
    assert str(err.value) == (f"storage_path {tmp_path}/node/tune-s-1234 is not the place the driver wrote to, seen "
                              f"from node 10.0.0.2 (its {STORAGE_MARK} is missing): set storage_path to a folder "
                              "every node sees, or a bucket")
    # Another driver has since marked the folder (two drivers on one experiment): its trials are not ours.
    assert mark_storage(driver_side) != mark
    with pytest.raises(SweepError, match="holds another driver's mark"):
        check_storage_seen(driver_side, mark, node="10.0.0.1")
