"""``<task>@<count>``: a built-in task trained on a fixed subset, so one sweep can hold it in several resource
groups (the Revisiting study's low / medium / high groups built from one learnable task)."""

from __future__ import annotations

import pytest

from pet_lightning import PETModule
from pet_lightning.data import TaskDataModule
from pet_lightning.data.readers import DataError
from pet_lightning.sweeps.plan import MethodSpec, SweepConfig, plan_runs
from pet_lightning.tasks import TASKS, get_task
from tests.helpers.trainers import quiet_trainer


def test_a_variant_is_its_task_with_a_training_subset_and_its_own_name():
    base, variant = get_task("sst-2"), get_task("SST-2@800")
    assert (variant.name, variant.train_subset, variant.train_size) == ("sst-2@800", 800, base.train_size)
    assert (variant.metrics, variant.headline, variant.folder, variant.label_values) == \
        (base.metrics, base.headline, base.folder, base.label_values)
    assert get_task("sst-2@800") is variant


def test_using_a_variant_leaves_the_task_table_and_the_unknown_task_error_as_they_were():
    before = set(TASKS)
    get_task("cb@20")
    with pytest.raises(ValueError) as err:
        get_task("nosuch")
    assert set(TASKS) == before and "cb@20" not in str(err.value)


@pytest.mark.parametrize("name, message", [
    ("sst-2@0", "sst-2 has 67349 training examples: use a count from 1 to 67348, or sst-2 itself"),
    ("sst-2@67349", "use a count from 1 to 67348"),
    ("sst-2@800@2", "names a subset of a built-in task's training split; for a task file, a variant or a task"),
    ("axb@10", "names a subset of a built-in task's training split"),
    ("nosuch@10", "unknown task 'nosuch'"),
])
def test_a_bad_variant_name_is_a_one_line_error(name, message):
    with pytest.raises(ValueError) as err:
        get_task(name)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_variant_is_its_task_as_if_its_training_split_were_the_subset(data_dir):
    # dev_split keeps train whole: the variant trains on exactly train_subset's draw, and dev is split alike.
    variant = TaskDataModule(task="mrpc@300", data_dir=data_dir, protocol="dev_split").plan_splits()
    subset = TaskDataModule(task="mrpc", data_dir=data_dir, protocol="dev_split", train_subset=300).plan_splits()
    assert len(variant.train) == 300 and variant.train == subset.train
    assert variant.selection == subset.selection and variant.report == subset.report
    # train_holdout selects on 10% of the variant's 300 examples (a task of that size), not on 10% of MRPC's 3,668;
    # the whole official dev set is reported.
    holdout = TaskDataModule(task="mrpc@300", data_dir=data_dir, protocol="train_holdout").plan_splits()
    (selection,) = holdout.selection.values()
    assert (len(holdout.train), len(selection)) == (270, 30)
    assert sorted(e["idx"] for e in holdout.train + selection) == sorted(e["idx"] for e in variant.train)
    full = TaskDataModule(task="mrpc", data_dir=data_dir, protocol="train_holdout").plan_splits()
    assert holdout.report == full.report and len(next(iter(holdout.report.values()))) == 408


def test_a_variant_of_a_task_whose_training_split_is_missing_is_refused_in_one_line(data_dir):
    # The shared data holds BoolQ's dev set only: without this, train_holdout would carve dev and ignore the @100.
    with pytest.raises(DataError) as err:
        TaskDataModule(task="boolq@100", data_dir=data_dir, protocol="train_holdout").plan_splits()
    assert str(err.value) == (f"task boolq@100 subsamples the training split, which {data_dir} lacks: add train.jsonl "
                              "there, or use the task itself")


def test_a_train_subset_on_a_variant_is_refused_in_one_line(data_dir):
    with pytest.raises(DataError) as err:
        TaskDataModule(task="mrpc@300", data_dir=data_dir, train_subset=200)
    assert str(err.value) == ("task mrpc@300 is mrpc with 300 training examples, and train_subset=200 would subsample "
                              "them again: drop train_subset, or name the task mrpc@200")


def test_a_sweep_runs_a_task_and_its_variant_side_by_side_and_a_variant_fits(data_dir, tiny):
    sweep = SweepConfig(name="v", tasks=["cb", "cb@100"], methods={"bitfit": MethodSpec(name="bitfit")}, seeds=[1],
                        wandb=False, out="unused")
    runs = plan_runs(sweep)
    assert sorted(run.task for run in runs) == ["cb", "cb@100"]
    variant = next(run for run in runs if run.task == "cb@100")
    assert variant.run_id.startswith("cb@100.bitfit.both.1.")
    assert variant.config["data"]["init_args"]["task"] == "cb@100"

    data = TaskDataModule(task="cb@100", data_dir=data_dir, backbone=tiny, batch_size=50, max_length=32,
                          protocol="dev_split")
    model = PETModule(backbone=tiny, task="cb@100", strategy="bitfit")
    trainer = quiet_trainer(max_epochs=1, precision="32-true")
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 2 and len(data.plan.train) == 100
    assert {"val/accuracy", "val/headline"} <= set(trainer.callback_metrics)
