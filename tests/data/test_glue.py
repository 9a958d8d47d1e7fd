"""GLUE loading from the real official files, and from small files in the same format for the tasks whose
files are too large to ship (SST-2, QQP, MNLI, QNLI)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pet_lightning.data import DataError, GlueDataModule
from pet_lightning.data.readers import read_hub
from pet_lightning.tasks import get_task

# Official row counts (train, dev, test), as in ../shared/data/MANIFEST.md.
REAL = {
    "cola": (8551, 1043, 1063),
    "mrpc": (3668, 408, 1725),
    "sts-b": (5749, 1500, 1379),
    "rte": (2490, 277, 3000),
    "wnli": (635, 71, 146),
}


@pytest.mark.parametrize("task", sorted(REAL))
def test_real_glue_task_loads_with_official_row_counts_and_labels(task, data_dir):
    dm = GlueDataModule(task=task, data_dir=data_dir)
    train, dev, test = (dm.load_examples(split) for split in ("train", "validation", "test"))
    assert (len(train), len(dev), len(test)) == REAL[task]
    spec = get_task(task)
    if spec.kind == "regression":
        scores = [e["label"] for e in train + dev]
        assert all(0.0 <= s <= 5.0 for s in scores) and len(set(scores)) > 50
    else:
        assert {e["label"] for e in train} == set(range(len(spec.label_values)))
        assert {e["label"] for e in dev} <= set(range(len(spec.label_values)))
    assert all(e["label"] is None for e in test)
    assert all(isinstance(e["text"], str) and e["text"] for e in train)
    assert [e["idx"] for e in test] == list(range(len(test)))


def test_known_rows_read_exactly(data_dir):
    rte = GlueDataModule(task="rte", data_dir=data_dir).load_examples("train")
    assert rte[0]["text"] == "No Weapons of Mass Destruction Found in Iraq Yet."
    assert rte[0]["text_pair"] == "Weapons of Mass Destruction Found in Iraq."
    assert rte[0]["label"] == 1  # not_entailment
    mrpc = GlueDataModule(task="mrpc", data_dir=data_dir).load_examples("train")
    assert mrpc[0]["label"] == 1 and mrpc[0]["text"].startswith("Amrozi accused his brother")
    cola = GlueDataModule(task="cola", data_dir=data_dir).load_examples("train")
    assert cola[0] == {"text": "Our friends won't buy this analysis, let alone the next one we propose.",
                       "text_pair": None, "label": 1, "idx": 0}


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fake_glue(root: Path) -> None:
    """Small files with the official headers of the large GLUE tasks (quotes included on purpose)."""
    _write(root / "glue/SST-2/train.tsv", ["sentence\tlabel", 'a "quoted gem\t1', "dull\t0", "fine\t1"])
    _write(root / "glue/SST-2/dev.tsv", ["sentence\tlabel", "great\t1", "bad\t0"])
    _write(root / "glue/SST-2/test.tsv", ["index\tsentence", "0\tokay"])
    _write(root / "glue/QQP/train.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
                                         "0\t1\t2\tHow?\tHow so?\t1", "1\t3\t4\tWhy?\tWhen?\t0"])
    _write(root / "glue/QQP/dev.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "5\t6\t7\tA?\tB?\t0"])
    mnli_header = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t" \
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
    _write(root / "glue/MNLI/train.tsv", [mnli_header, "0\t1\t1e\tfic\tx\tx\tx\tx\tA man.\tA person.\tentailment"
                                          "\tentailment", "1\t2\t2n\tfic\tx\tx\tx\tx\tIt rains.\tIt is dry.\t"
                                          "contradiction\tcontradiction"])
    dev_header = mnli_header.replace("label1\tgold_label", "label1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label")
    row = "0\t1\t1n\tgov\tx\tx\tx\tx\tP.\tH.\tneutral\tneutral\tneutral\tneutral\tneutral\tneutral"
    _write(root / "glue/MNLI/dev_matched.tsv", [dev_header, row])
    _write(root / "glue/MNLI/dev_mismatched.tsv", [dev_header, row, row.replace("neutral", "entailment")])
    _write(root / "glue/QNLI/train.tsv", ["index\tquestion\tsentence\tlabel", "0\tWho?\tHim.\tentailment",
                                          "1\tWhat?\tNo.\tnot_entailment"])
    _write(root / "glue/QNLI/dev.tsv", ["index\tquestion\tsentence\tlabel", "0\tWho?\tHer.\tentailment"])


@pytest.mark.parametrize(("task", "train", "labels"), [("sst-2", 3, {0, 1}), ("qqp", 2, {0, 1}),
                                                      ("mnli", 2, {0, 2}), ("qnli", 2, {0, 1})])
def test_large_glue_tasks_read_the_official_format(tmp_path, task, train, labels):
    _fake_glue(tmp_path)
    dm = GlueDataModule(task=task, data_dir=str(tmp_path))
    examples = dm.load_examples("train")
    assert len(examples) == train and {e["label"] for e in examples} == labels


def test_stray_quotes_do_not_merge_rows(tmp_path):
    _fake_glue(tmp_path)
    examples = GlueDataModule(task="sst-2", data_dir=str(tmp_path)).load_examples("train")
    assert examples[0]["text"] == 'a "quoted gem' and len(examples) == 3


def test_mnli_has_matched_and_mismatched_validation(tmp_path):
    _fake_glue(tmp_path)
    dm = GlueDataModule(task="mnli", data_dir=str(tmp_path), protocol="standard")
    dm.setup("fit")
    assert [len(d) for d in dm.datasets["val"].values()] == [1, 2]
    assert dm.eval_suffixes("val") == ["", "_mismatched"]


def test_malformed_row_names_file_and_line(tmp_path):
    _write(tmp_path / "glue/RTE/train.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tentailment",
                                             "1\tonly two"])
    dm = GlueDataModule(task="rte", data_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"train.tsv:3: malformed row with 2 columns, expected 4") as err:
        dm.load_examples("train")
    assert "\n" not in str(err.value)


def test_unknown_label_names_the_row(tmp_path):
    _write(tmp_path / "glue/RTE/train.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tmaybe"])
    with pytest.raises(DataError, match=r"row 1: label 'maybe' is not one of"):
        GlueDataModule(task="rte", data_dir=str(tmp_path)).load_examples("train")


def test_missing_task_files_say_where_to_put_them(tmp_path):
    dm = GlueDataModule(task="rte", data_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"missing data file .*RTE/(train|dev).tsv: put the official GLUE files"):
        dm.setup("fit")


def test_hub_without_network_fails_at_once_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"set PET_DATA_DIR or --data.data_dir to a local data root"):
        read_hub(get_task("rte"), "train")


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match=r"max_length=4 is too short: use at least 8"):
        GlueDataModule(task="rte", max_length=4)
    with pytest.raises(ValueError, match=r"unknown task 'nope'"):
        GlueDataModule(task="nope")


def test_batches_are_padded_to_their_longest_member_and_order_seed_alone_sets_the_order(data_dir):
    def first_batches(order_seed: int, **kwargs):
        dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=8, max_length=64, order_seed=order_seed,
                            train_subset=64, **kwargs)
        dm.setup("fit")
        loader = dm.train_dataloader()
        return [batch for _, batch in zip(range(3), loader)]

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    assert all((x["idx"] == y["idx"]).all() for x, y in zip(a, b))
    assert any((x["idx"] != y["idx"]).any() for x, y in zip(a, c))
    batch = a[0]
    lengths = batch["attention_mask"].sum(dim=1)
    assert batch["input_ids"].shape[1] == int(lengths.max()) <= 64
    assert batch["label"].dtype.is_floating_point is False


def test_regression_labels_are_float(data_dir):
    dm = GlueDataModule(task="sts-b", data_dir=data_dir, batch_size=4, train_subset=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["label"].dtype.is_floating_point and not math.isnan(float(batch["label"][0]))
