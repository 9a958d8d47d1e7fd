"""``<task>@<count>``: a built-in task trained on a fixed subset, so one sweep can hold it in several resource
groups (the Revisiting study's low / medium / high groups built from one learnable task)."""

from __future__ import annotations

import pytest

from pet_lightning import PETModule
from pet_lightning.data import TaskDataModule
from pet_lightning.data.readers import DataError
from pet_lightning.sweeps.plan import MethodSpec, SweepConfig, plan_runs
from pet_lightning.tasks import get_task
from tests.helpers.trainers import quiet_trainer


def test_a_variant_is_its_task_with_a_training_subset_and_its_own_name():
    base, variant = get_task("sst-2"), get_task("SST-2@800")
    assert (variant.name, variant.train_subset, variant.train_size) == ("sst-2@800", 800, base.train_size)
    assert (variant.metrics, variant.headline, variant.folder, variant.label_values) == \
        (base.metrics, base.headline, base.folder, base.label_values)
    assert get_task("sst-2@800") is variant


@pytest.mark.parametrize("name, message", [
    ("sst-2@0", "sst-2 has 67349 training examples: use a count from 1 to 67348, or sst-2 itself"),
    ("sst-2@67349", "use a count from 1 to 67348"),
    ("sst-2@800@2", "names a subset of a built-in task; for a task file or a variant, set data.train_subset"),
    ("nosuch@10", "unknown task 'nosuch'"),
])
def test_a_bad_variant_name_is_a_one_line_error(name, message):
    with pytest.raises(ValueError) as err:
        get_task(name)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_variant_trains_on_the_same_examples_as_its_task_with_train_subset_and_reports_the_same_set(data_dir):
    for protocol in ("dev_split", "train_holdout"):
        variant = TaskDataModule(task="mrpc@300", data_dir=data_dir, protocol=protocol).plan_splits()
        subset = TaskDataModule(task="mrpc", data_dir=data_dir, protocol=protocol, train_subset=300).plan_splits()
        assert len(variant.train) == 300
        assert variant.train == subset.train
        assert variant.selection == subset.selection and variant.report == subset.report


def test_a_train_subset_that_contradicts_the_variant_is_refused_in_one_line(data_dir):
    with pytest.raises(DataError) as err:
        TaskDataModule(task="mrpc@300", data_dir=data_dir, train_subset=200)
    assert str(err.value) == ("task mrpc@300 trains on 300 examples, but train_subset=200: drop train_subset, or "
                              "name the task mrpc@200")
    assert TaskDataModule(task="mrpc@300", data_dir=data_dir, train_subset=300).train_subset == 300


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
