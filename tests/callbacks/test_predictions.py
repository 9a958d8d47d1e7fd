"""Leaderboard submission files: formats per benchmark and task, and a real ``trainer.predict`` on CB."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import pytest

from pet_lightning.callbacks import SubmissionWriter
from pet_lightning.callbacks.predictions import write_submission
from pet_lightning.data import GlueDataModule, SuperGlueDataModule
from pet_lightning.module import PETModule
from pet_lightning.tasks import get_task


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _examples(official_ids: list[int]) -> list[dict]:
    return [{"idx": position, "meta": {"idx": official}} for position, official in enumerate(official_ids)]


@pytest.mark.parametrize(
    ("task", "labels"),
    [
        ("cb", ["entailment", "contradiction", "neutral"]),
        ("boolq", ["false", "true", "true"]),
        ("wic", ["false", "true", "true"]),
        ("wsc", ["False", "True", "True"]),
        ("copa", [0, 1, 1]),
        ("superglue-rte", ["entailment", "not_entailment", "not_entailment"]),
        ("axb", ["entailment", "not_entailment", "not_entailment"]),
    ],
)
def test_superglue_jsonl_has_official_ids_and_label_strings(tmp_path, task, labels):
    rows = [(2, 2 if task == "cb" else 1, []), (0, 0, []), (1, 1, [])]  # out of order, as shards may arrive
    path = write_submission(get_task(task), _examples([10, 11, 12]), sorted(rows), tmp_path)
    assert path.name == f"{get_task(task).folder}.jsonl"
    assert _jsonl(path) == [{"idx": 10 + i, "label": label} for i, label in enumerate(labels)]


def test_multirc_nests_answers_in_questions_in_passages(tmp_path):
    metas = [(0, 0, 0), (0, 0, 1), (0, 1, 2), (5, 2, 0)]
    examples = [
        {"idx": i, "group": 0, "meta": {"passage": p, "question": q, "answer": a}} for i, (p, q, a) in enumerate(metas)
    ]
    path = write_submission(get_task("multirc"), examples, [(i, i % 2, []) for i in range(4)], tmp_path)
    assert path.name == "MultiRC.jsonl"
    assert _jsonl(path) == [
        {
            "idx": 0,
            "passage": {
                "questions": [
                    {"idx": 0, "answers": [{"idx": 0, "label": 0}, {"idx": 1, "label": 1}]},
                    {"idx": 1, "answers": [{"idx": 2, "label": 0}]},
                ]
            },
        },
        {"idx": 5, "passage": {"questions": [{"idx": 2, "answers": [{"idx": 0, "label": 1}]}]}},
    ]


def test_record_answers_each_query_with_its_highest_margin_entity(tmp_path):
    entities = [("Ann", 0, 7), ("Bob", 0, 7), ("Paris", 0, 7), ("Ann", 1, 8), ("Bob", 1, 8)]
    examples = [{"idx": i, "group": g, "meta": {"idx": q, "entity": e}} for i, (e, g, q) in enumerate(entities)]
    logits = [[0.0, 1.0], [0.0, 3.0], [2.0, 0.0], [0.0, 0.2], [1.0, 0.0]]
    rows = [(i, int(row[1] > row[0]), row) for i, row in enumerate(logits)]
    path = write_submission(get_task("record"), examples, rows, tmp_path)
    assert _jsonl(path) == [{"idx": 7, "label": "Bob"}, {"idx": 8, "label": "Ann"}]


def test_glue_tsv_has_index_and_label_strings(tmp_path):
    examples = [{"idx": i} for i in range(3)]
    path = write_submission(get_task("rte"), examples, [(0, 1, []), (1, 0, []), (2, 1, [])], tmp_path)
    with path.open(encoding="utf-8") as handle:
        assert list(csv.reader(handle, delimiter="\t")) == [
            ["index", "prediction"],
            ["0", "not_entailment"],
            ["1", "entailment"],
            ["2", "not_entailment"],
        ]
    stsb = write_submission(get_task("sts-b"), examples, [(0, 5.7, []), (1, -0.2, []), (2, 2.5, [])], tmp_path)
    assert stsb.read_text().splitlines() == ["index\tprediction", "0\t5.000", "1\t0.000", "2\t2.500"]
    assert write_submission(get_task("mnli"), examples, [(i, 0, []) for i in range(3)], tmp_path).name == "MNLI-m.tsv"
    with pytest.raises(ValueError, match="got 2 predictions for 3 test examples"):
        write_submission(get_task("rte"), examples, [(0, 1, []), (1, 0, [])], tmp_path)


def _predict(model: PETModule, datamodule, output_dir: Path) -> SubmissionWriter:
    writer = SubmissionWriter(output_dir=str(output_dir))
    trainer = L.Trainer(
        accelerator="cpu", logger=False, callbacks=[writer], enable_progress_bar=False, enable_model_summary=False
    )
    trainer.predict(model, datamodule=datamodule, return_predictions=False)
    return writer


def test_predict_on_real_cb_and_wnli_test_files_writes_parseable_submissions(data_dir, tmp_path):
    model = PETModule(task="cb", strategy="frozen", init_seed=0)
    cb = SuperGlueDataModule(task="cb", data_dir=data_dir, max_length=48, batch_size=32)
    writer = _predict(model, cb, tmp_path)
    lines = _jsonl(writer.written)
    official = [json.loads(line)["idx"] for line in Path(data_dir, "superglue/CB/test.jsonl").read_text().splitlines()]
    assert writer.written == tmp_path / "CB.jsonl"
    assert [line["idx"] for line in lines] == official and len(lines) == 250
    assert {line["label"] for line in lines} <= {"entailment", "contradiction", "neutral"}

    wnli_model = PETModule(task="wnli", strategy="frozen", init_seed=0)
    wnli = GlueDataModule(task="wnli", data_dir=data_dir, max_length=48, batch_size=32)
    writer = _predict(wnli_model, wnli, tmp_path)
    with writer.written.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    with Path(data_dir, "glue/WNLI/test.tsv").open(encoding="utf-8") as handle:
        official = [row[0] for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    assert rows[0] == ["index", "prediction"] and [row[0] for row in rows[1:]] == official
    assert {row[1] for row in rows[1:]} <= {"0", "1"}
