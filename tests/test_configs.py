"""Every shipped ``fit`` config of the study folders trains end to end from the command line's code path (one batch
each).

Real data for the tasks in the shared data; RTE's jsonl is GLUE's RTE rewritten in the SuperGLUE layout (the same
examples), ReCoRD (not in the shared data) a hand-written file in the official layout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.config_runs import run_config
from benchmarks.superglue_table import write_rte_jsonl
from tests.conftest import REPO_ROOT
from tests.data.test_superglue import _write_jsonl, record_row

SUPERGLUE_CONFIGS = sorted(path.stem for path in (REPO_ROOT / "configs" / "superglue").glob("*.yaml"))
REVISITING_TASKS = ("boolq", "cb", "cola", "copa", "mrpc", "rte", "sts-b", "wic", "wsc")
REVISITING_METHODS = ("adapter", "bitfit", "full", "ia3", "lora", "prefix", "prompt")
REVISITING_CONFIGS = sorted(path.stem for path in (REPO_ROOT / "configs" / "revisiting").glob("*.yaml")
                            if not path.stem.startswith("sweep_"))


def test_every_superglue_task_has_a_full_and_a_bitfit_config():
    tasks = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
    assert sorted(f"{task}_{strategy}" for task in tasks for strategy in ("bitfit", "full")) == SUPERGLUE_CONFIGS


@pytest.fixture(scope="module")
def local_roots(data_dir, tmp_path_factory) -> dict[str, str]:
    rte = tmp_path_factory.mktemp("rte")
    write_rte_jsonl(Path(data_dir), rte)
    record = tmp_path_factory.mktemp("record")
    rows = [record_row(i, [["Ann Lee"], ["Bob Ray"], ["Paris"]][i % 3]) for i in range(6)]
    for split in ("train", "val"):
        _write_jsonl(record / f"superglue/ReCoRD/{split}.jsonl", rows)
    return {"rte": str(rte), "record": str(record)}


@pytest.mark.parametrize("config", SUPERGLUE_CONFIGS)
def test_superglue_config_fits(config, data_dir, local_roots, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    task, strategy = config.split("_")
    fields = run_config(f"configs/superglue/{config}.yaml",
                        ["--trainer.fast_dev_run=true", "--data.init_args.train_subset=32",
                         f"--data.init_args.data_dir={local_roots.get(task, data_dir)}"], tmp_path)
    assert fields["strategy"] == strategy and int(fields["steps"]) == 1
    assert fields["task"] == ("superglue-rte" if task == "rte" else task)
    assert float(fields["trainable_pct"]) == (100.0 if strategy == "full" else pytest.approx(0.115, abs=0.01))
    assert any(key.startswith("best_val_") for key in fields)


def test_every_revisiting_task_has_a_config_per_method():
    expected = sorted(f"{task}_{method}" for task in REVISITING_TASKS for method in REVISITING_METHODS)
    assert expected == REVISITING_CONFIGS


@pytest.mark.parametrize("config", REVISITING_CONFIGS)
def test_revisiting_config_fits(config, data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    task, method = config.split("_")
    fields = run_config(f"configs/revisiting/{config}.yaml",
                        ["--trainer.fast_dev_run=true", "--data.init_args.train_subset=16",
                         f"--data.init_args.data_dir={data_dir}"], tmp_path)
    assert fields["task"] == task and fields["strategy"] == method and int(fields["steps"]) == 1
    trainable_pct = float(fields["trainable_pct"])
    assert (trainable_pct == 100.0) if method == "full" else (0.0 < trainable_pct < 5.0)
