"""Task files (issue 30): a user's own labelled text data runs through the same data pipeline as the built-in tasks."""

from __future__ import annotations

import contextlib
import io
import math

import lightning as L
import pandas as pd
import pytest
import torch
import yaml

from pet_lightning.data import TaskDataModule
from pet_lightning.data.audit import audit_task
from pet_lightning.data.task_files import TaskFileError, load_task_file
from tests.conftest import REPO_ROOT
from tests.data.task_file_helpers import (
    PAIR_LABELS,
    mrpc_reexport,
    pair_frame,
    pair_task,
    regression_task,
    write_task,
)

FORMATS = (".csv", ".jsonl", ".parquet")


def _fit(task: str, backbone: str, tmp_path, steps: int = 3):
    from pet_lightning import PETModule

    data = TaskDataModule(task=task, backbone=backbone, batch_size=8, max_length=32, order_seed=0)
    model = PETModule(task=data.task, backbone=backbone, learning_rate=1e-3, init_seed=0)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, max_epochs=1, limit_train_batches=steps, limit_val_batches=1,
                        num_sanity_val_steps=0,
                        enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    return trainer, model, data


@pytest.mark.parametrize("ext", FORMATS)
def test_a_pair_classification_task_with_string_labels_fits_in_every_format(ext, tiny, tmp_path):
    path = pair_task(tmp_path / "pair", ext)
    trainer, model, data = _fit(str(path), tiny, tmp_path)
    assert trainer.global_step == 3
    assert model.spec.name == data.task == "pair-task" and model.spec.kind == "classification"
    assert model.spec.label_values == PAIR_LABELS  # sorted values found in train
    assert model.hparams.task == data.hparams.task == str(path)  # checkpoints name the file, as configs do
    train = pair_frame(64)
    # Renamed columns and string labels: every example holds its own row's texts and the label's class id.
    for example, (_, row) in zip(data.plan.train, train.iterrows()):
        assert (example["text"], example["text_pair"]) == (row["left_sentence"], row["right_sentence"])
        assert example["label"] == PAIR_LABELS.index(row["verdict"])
    assert math.isfinite(trainer.callback_metrics["val/loss"].item())
    assert "val/f1" in trainer.callback_metrics and "val/mcc" in trainer.callback_metrics  # binary defaults


@pytest.mark.parametrize("ext", FORMATS)
def test_a_single_text_regression_task_fits_in_every_format(ext, tiny, tmp_path):
    path = regression_task(tmp_path / "score", ext)
    trainer, model, data = _fit(str(path), tiny, tmp_path)
    assert trainer.global_step == 3 and model.spec.num_labels == 1 and model.spec.label_values == ()
    assert [e["text_pair"] for e in data.plan.train] == [None] * 60
    assert [e["label"] for e in data.plan.train[:5]] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert model.spec.headline == "pearson" and "val/spearman" in trainer.callback_metrics


def test_label_values_order_the_classes_and_the_cli_fits_a_task_file_with_a_logger(tiny, tmp_path, monkeypatch):
    from pet_lightning.cli import main

    path = pair_task(tmp_path / "pair", ".csv", label_values=["same", "different"], headline="f1",
                     metrics=["accuracy", "f1"])
    spec = load_task_file(path)
    assert spec.label_values == ("same", "different") and spec.headline == "f1"
    from pet_lightning import paths

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paths, "START_DIR", tmp_path)  # the command starts in tmp_path
    # A relative path, read against the start folder; a CSV logger makes Lightning compare model and data hparams.
    code = main(["fit", "--config", str(REPO_ROOT / "configs" / "quickstart.yaml"), "--data.init_args.task",
                 "pair/task.yaml", "--model.backbone", tiny, "--trainer.max_steps=2", "--trainer.limit_val_batches=1",
                 "--trainer.precision=32-true", "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]",
                 '--trainer.logger={"class_path": "lightning.pytorch.loggers.CSVLogger", '
                 '"init_args": {"save_dir": "logs"}}', "--data.init_args.batch_size=8"])
    assert code == 0
    (hparams,) = (tmp_path / "logs").rglob("hparams.yaml")
    assert yaml.safe_load(hparams.read_text())["task"] == str(tmp_path / "pair" / "task.yaml")


def test_mrpc_reexported_under_other_names_gives_the_same_batches_and_audit(data_dir, tmp_path):
    path = str(mrpc_reexport(data_dir, tmp_path / "mrpc"))
    assert load_task_file(path).train_size == 3668 and load_task_file(path).resource_group == "medium"
    for protocol in ("dev_split", "train_holdout"):
        ours = TaskDataModule(task=path, protocol=protocol, order_seed=0, train_subset=500, batch_size=16)
        builtin = TaskDataModule(task="mrpc", data_dir=data_dir, protocol=protocol, order_seed=0, train_subset=500,
                                 batch_size=16)
        for dm in (ours, builtin):
            dm.setup("fit")
        pairs = [(ours.train_dataloader(), builtin.train_dataloader()),
                 (ours.val_dataloader()[0], builtin.val_dataloader()[0]),
                 (ours.test_dataloader()[0], builtin.test_dataloader()[0])]
        for left, right in pairs:
            batches = list(zip(left, right))
            assert batches and len(left) == len(right)
            for a, b in batches:
                assert a.keys() == b.keys()
                assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
        counts = [(b.left, b.right, b.drawn_by, b.left_size, b.right_size, b.shared)
                  for b in audit_task(path, protocol, train_subset=500)]
        assert counts == [(b.left, b.right, b.drawn_by, b.left_size, b.right_size, b.shared)
                          for b in audit_task("mrpc", protocol, data_dir, train_subset=500)]
        assert any(shared for *_, shared in counts)  # the official train/dev overlap shows, as for mrpc


def test_the_audit_keeps_group_values_whole(tmp_path):
    frames = {"train": pair_frame(80), "validation": pair_frame(40, seed=1)}
    path = write_task(tmp_path / "grouped", frames, ".csv", name="grouped", text=["left_sentence", "right_sentence"],
                      label="verdict", type="classification", group=["doc"])
    for protocol, subset in (("dev_split", 40), ("train_holdout", 30)):
        dm = TaskDataModule(task=str(path), protocol=protocol, train_subset=subset)
        plan = dm.plan_splits()
        parts = {"train": plan.train, "unused": plan.unused_train,
                 **{f"sel:{k}": v for k, v in plan.selection.items()},
                 **{f"rep:{k}": v for k, v in plan.report.items()}}
        docs = {name: {key for e in rows for key in e["meta"]["group_keys"]} for name, rows in parts.items()}
        for left in ("train", "unused"):  # both sides from the train file: no doc on both
            for right in parts:
                if right != left and plan.origins.get("selection") == "train" and right.startswith("sel"):
                    assert not docs[left] & docs[right], (protocol, left, right)
        assert not docs["train"] & docs["unused"]
        boundaries = audit_task(str(path), protocol, train_subset=subset)
        assert all(b.shared == 0 for b in boundaries if b.carved), boundaries
    # Train and dev ids d0..d9 coincide: the official boundary shows it (a group key links across files).
    official = [b for b in audit_task(str(path), "dev_split") if not b.carved]
    assert official and all(b.shared > 0 for b in official)
    without = write_task(tmp_path / "plain", frames, ".csv", name="plain", text=["left_sentence", "right_sentence"],
                         label="verdict", type="classification")
    assert all(b.shared == 0 for b in audit_task(str(without), "dev_split") if not b.carved)


def test_a_task_without_validation_file_runs_train_holdout_only(tmp_path):
    path = write_task(tmp_path / "solo", {"train": pair_frame(100)}, ".jsonl", name="solo",
                      text=["left_sentence", "right_sentence"], label="verdict", type="classification")
    with pytest.raises(TaskFileError, match="has no validation file, so protocol 'dev_split' cannot run"):
        TaskDataModule(task=str(path), protocol="dev_split")
    plan = TaskDataModule(task=str(path), protocol="train_holdout").plan_splits()
    sizes = (len(plan.train), len(plan.selection["validation"]), len(plan.report["validation"]))
    assert sum(sizes) == 100 and sizes[2] == 50  # half reported, the rest train + selection (as BoolQ's dev)
    parts = (plan.train, plan.selection["validation"], plan.report["validation"])
    texts = [{e["text"] for e in part} for part in parts]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])


def test_a_sweep_lists_task_files_beside_built_in_tasks_and_names_runs_by_name(tmp_path, in_repo):
    from pet_lightning.sweeps.plan import SweepConfig, plan_runs

    path = pair_task(tmp_path / "pair")
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "mixed", "tasks": [str(path), "rte"], "methods": ["bitfit"],
                                          "seeds": [1], "out": str(tmp_path / "out"), "wandb": False}))
    runs = plan_runs(SweepConfig.from_file(sweep_file))
    (own,) = [run for run in runs if run.task == "pair-task"]
    assert own.run_id.startswith("pair-task.bitfit.both.1.")
    assert own.config["data"]["init_args"]["task"] == str(path)
    assert own.config["data"]["class_path"] == "pet_lightning.data.TaskDataModule"
    assert {run.task for run in runs} == {"pair-task", "rte"}


def _cli_error(args: list[str]) -> tuple[int, list[str]]:
    from pet_lightning.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, [line for line in stderr.getvalue().splitlines() if line.startswith("error: ")]


def _bad(tmp_path, case: str):
    folder = tmp_path / case
    keys = {"name": "bad-task", "text": ["left_sentence", "right_sentence"], "label": "verdict",
            "type": "classification"}
    train, dev = pair_frame(40), pair_frame(20, seed=2)
    if case == "missing_file":
        path = write_task(folder, {"train": train}, ".csv", **keys)
        text = path.read_text().replace("train.csv", "trian.csv")
        path.write_text(text)
        return path, f"{path}: files.train {folder / 'trian.csv'} does not exist: fix the path"
    if case == "missing_column":
        path = write_task(folder, {"train": train, "validation": dev.rename(columns={"verdict": "gold"})}, ".csv",
                          **keys)
        columns = "left_sentence, right_sentence, gold"
        return path, f"{folder / 'validation.csv'} has no column 'verdict' (columns: {columns}"
    if case == "unseen_label":
        dev.loc[3, "verdict"] = "maybe"
        path = write_task(folder, {"train": train, "validation": dev}, ".csv", **keys)
        return path, (f"{folder / 'validation.csv'} row 4: label 'maybe' in column 'verdict' is not one of the "
                      "train labels ['different', 'same']: fix the row, or list it in label_values")
    if case == "not_a_number":
        frame = pd.DataFrame({"review": ["fine", "bad", "ok"], "stars": ["1.5", "two", "3"]})
        path = write_task(folder, {"train": frame}, ".csv", name="bad-score", text=["review"], label="stars",
                          type="regression")
        return path, (f"{folder / 'train.csv'} row 2: regression label 'two' in column 'stars' is not a number: "
                      "fix the row")
    if case == "empty_split":
        path = write_task(folder, {"train": train, "validation": dev.iloc[:0]}, ".csv", **keys)
        return path, f"{folder / 'validation.csv'} has no rows: add examples, or remove that split"
    path = write_task(folder, {"train": train}, ".csv", **{**keys, "name": "RTE"})
    return path, f"{path}: name 'RTE' is a built-in task: rename the task (name: my-rte)"


BAD = ("missing_file", "missing_column", "unseen_label", "not_a_number", "empty_split", "shadows_builtin")


@pytest.mark.parametrize("case", BAD)
def test_every_bad_input_is_one_line_and_exit_2(case, tmp_path):
    path, message = _bad(tmp_path, case)
    code, errors = _cli_error(["audit", "--task", str(path)])
    assert code == 2 and len(errors) == 1 and errors[0].startswith(f"error: {message}"), errors
    code, errors = _cli_error(["fit", "--config", str(REPO_ROOT / "configs" / "quickstart.yaml"),
                               "--trainer.fast_dev_run=true", "--trainer.logger=false",
                               f"--data.init_args.task={path}"])
    assert code == 2 and len(errors) == 1 and errors[0].startswith(f"error: {message}"), errors


def test_predict_writes_one_line_per_test_row_of_an_unlabelled_test_file(tiny, tmp_path):
    import json

    from pet_lightning import PETModule
    from pet_lightning.callbacks import SubmissionWriter
    from tests.data.task_file_helpers import regression_frame

    frames = {"train": regression_frame(30), "validation": regression_frame(10),
              "test": regression_frame(7).drop(columns=["stars"])}
    path = write_task(tmp_path / "score", frames, ".parquet", name="score-task", text=["review"], label="stars",
                      type="regression")
    data = TaskDataModule(task=str(path), backbone=tiny, max_length=32)
    writer = SubmissionWriter(str(tmp_path / "out"))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer],
                        default_root_dir=tmp_path)
    trainer.predict(PETModule(task=data.task, backbone=tiny, init_seed=0), datamodule=data)
    lines = [json.loads(line) for line in writer.written.read_text().splitlines()]
    assert writer.written.name == "score-task.jsonl"
    assert [line["idx"] for line in lines] == list(range(7)) and all(isinstance(x["label"], float) for x in lines)
