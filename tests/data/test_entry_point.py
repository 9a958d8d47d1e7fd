"""``TaskDataModule`` is the one data entry point: the task table decides GLUE or SuperGLUE, and every task behaves
as it does in the benchmark's own module (``GlueDataModule`` / ``SuperGlueDataModule``, which only refuse the other
benchmark's tasks)."""

from __future__ import annotations

import pytest

from pet_lightning.data import DataError, GlueDataModule, SuperGlueDataModule, TaskDataModule
from tests.helpers.data import write_jsonl


def _texts(module: TaskDataModule) -> dict[str, list]:
    module.setup("fit")
    plan = module.plan
    return {
        "train": [(e["text"], e.get("text_pair"), e["label"]) for e in plan.train],
        **{f"val/{name}": [e["label"] for e in rows] for name, rows in plan.selection.items()},
        **{f"test/{name}": [e["label"] for e in rows] for name, rows in plan.report.items()},
    }


@pytest.mark.parametrize(("task", "benchmark_module"), [("cb", SuperGlueDataModule), ("wnli", GlueDataModule)])
def test_the_entry_point_splits_a_task_as_its_benchmark_module_does(task, benchmark_module, data_dir):
    options = {"data_dir": data_dir, "protocol": "dev_split", "max_length": 32}
    one = TaskDataModule(task=task, **options)
    assert one.spec.benchmark == benchmark_module.benchmark
    assert _texts(one) == _texts(benchmark_module(task=task, **options))


def test_rte_has_two_readings_and_each_module_names_them(tmp_path):
    assert TaskDataModule(task="rte").spec.benchmark == "glue"
    assert GlueDataModule(task="rte").spec.benchmark == "glue"
    superglue = TaskDataModule(task="superglue-rte")
    assert superglue.spec.benchmark == "superglue" and superglue.spec.files["train"] == "train.jsonl"
    # Inside SuperGlueDataModule, plain `rte` means the jsonl reading.
    assert SuperGlueDataModule(task="rte").task == "superglue-rte"


def test_an_evaluation_only_diagnostic_works_through_the_entry_point(tmp_path):
    rows = [{"sentence1": "S", "sentence2": "T", "label": label, "idx": i} for i, label in
            enumerate(["entailment", "not_entailment"])]
    write_jsonl(tmp_path / "superglue/AX-b/AX-b.jsonl", rows)
    axb = TaskDataModule(task="axb", data_dir=str(tmp_path), max_length=16)
    axb.setup("validate")
    assert axb.evaluation_only and axb.plan.leaky and axb.plan.train == []
    assert [e["label"] for e in axb.plan.report["test"]] == [0, 1]
    with pytest.raises(DataError, match="evaluation-only diagnostic: train on rte"):
        axb.train_dataloader()


def test_batches_never_carry_the_official_ids(data_dir):
    cb = TaskDataModule(task="cb", data_dir=data_dir, max_length=16, train_subset=4)
    cb.setup("fit")
    assert "meta" in cb.plan.train[0]  # kept for prediction files...
    batch = next(iter(cb.train_dataloader()))
    assert "meta" not in batch and {"input_ids", "label", "idx"} <= set(batch)  # ...but never batched


@pytest.mark.parametrize(
    ("module", "task", "message"),
    [
        (GlueDataModule, "cb", "task 'cb' is a SuperGLUE task, not GLUE: use SuperGlueDataModule for it, or "
                               "pet_lightning.data.TaskDataModule, which takes every task"),
        (SuperGlueDataModule, "mrpc", "task 'mrpc' is a GLUE task, not SuperGLUE: use GlueDataModule for it"),
    ],
)
def test_a_benchmark_module_refuses_the_other_benchmarks_tasks_naming_the_fix(module, task, message):
    with pytest.raises(DataError) as raised:
        module(task=task)
    assert str(raised.value).startswith(message)
