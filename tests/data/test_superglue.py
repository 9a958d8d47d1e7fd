"""SuperGLUE loading and formulations: the real official files, and small hand-written files in the official
layout for the tasks not in the shared data (ReCoRD, RTE, AX-b, AX-g)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from pet_lightning.data import DataError, GlueDataModule, SuperGlueDataModule
from pet_lightning.data.formulations import FORMULATIONS
from pet_lightning.data.superglue import token_f1
from pet_lightning.module import PETModule
from pet_lightning.tasks import get_task
from tests.helpers.data import record_row, write_jsonl
from tests.helpers.trainers import quiet_trainer

# Official row counts (train, val, test) as in ../shared/data/MANIFEST.md; MultiRC counts answer options.
REAL = {
    "cb": (250, 56, 250),
    "copa": (400, 100, 500),
    "wsc": (554, 104, 146),
    "wic": (5428, 638, 1400),
    "multirc": (27243, 4848, 9693),
}


@pytest.mark.parametrize("task", sorted(REAL))
def test_real_superglue_task_loads_with_official_row_counts(task, data_dir):
    dm = SuperGlueDataModule(task=task, data_dir=data_dir)
    train, val, test = (dm.load_examples(split) for split in ("train", "validation", "test"))
    assert (len(train), len(val), len(test)) == REAL[task]
    spec = get_task(task)
    classes = set(range(max(len(spec.label_values), 2)))
    assert {e["label"] for e in train} == classes
    assert {e["label"] for e in val} <= classes
    assert all(e["label"] is None for e in test)
    for split in (train, val, test):
        assert [e["idx"] for e in split] == list(range(len(split)))


def test_multirc_counts_passages_questions_and_keeps_question_groups(data_dir):
    dm = SuperGlueDataModule(task="multirc", data_dir=data_dir)
    train, val = dm.load_examples("train"), dm.load_examples("validation")
    assert len({e["meta"]["passage"] for e in train}) == 456
    assert len({e["meta"]["passage"] for e in val}) == 83
    # One group per (passage, question): every answer of a question shares it, no group spans two questions.
    questions = {(e["meta"]["passage"], e["meta"]["question"]) for e in val}
    assert len({e["group"] for e in val}) == len(questions)
    first = val[0]
    assert first["text"] == "Would the mass of a baseball affect how much force you have to use to pick it up? No"
    assert first["text_pair"].startswith("What causes a change in motion?") and first["label"] == 0
    # A training subset keeps questions whole, so per-question exact match stays defined.
    subset = SuperGlueDataModule(task="multirc", data_dir=data_dir, train_subset=300, subset_seed=1)
    kept = subset.plan_splits().train
    sizes = {g: sum(e["group"] == g for e in train) for g in {e["group"] for e in kept}}
    assert all(sum(e["group"] == g for e in kept) == size for g, size in sizes.items())


def test_boolq_without_train_explains_and_train_holdout_carves_it_out_of_val(data_dir):
    standard = SuperGlueDataModule(task="boolq", data_dir=data_dir)
    assert standard.available_splits() == ["validation", "test"]
    with pytest.raises(DataError, match="no training split.*train_holdout"):
        standard.plan_splits()
    plan = SuperGlueDataModule(task="boolq", data_dir=data_dir, protocol="train_holdout").plan_splits()
    train, select, report = plan.train, plan.selection["validation"], plan.report["validation"]
    assert len(train) + len(select) + len(report) == 3270 and len(plan.predict) == 3245
    ids = [{e["idx"] for e in part} for part in (train, select, report)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert plan.predict[0]["text"] == "is the first series 20 euro note still legal tender"


def test_copa_is_multiple_choice_with_the_right_connective(data_dir):
    dm = SuperGlueDataModule(task="copa", data_dir=data_dir, max_length=32)
    val = dm.load_examples("validation")
    # val idx 0: effect -> "so"; train idx 5 is a cause -> "because".
    assert val[0]["text"] == ["The man turned on the faucet.", "The man turned on the faucet."]
    assert val[0]["text_pair"] == ["so the toilet filled with water.", "so water flowed from the spout."]
    assert val[0]["label"] == 1
    causes = [e for e in dm.load_examples("train") if e["text_pair"][0].startswith("because ")]
    assert len(causes) > 150 and all(e["text_pair"][1].startswith("because ") for e in causes)
    batch = dm.collator(dm.encode(val[:3]).features)
    assert batch["input_ids"].shape[:2] == (3, 2) and batch["attention_mask"].shape == batch["input_ids"].shape
    assert batch["label"].tolist() == [1, 1, 0]
    assert get_task("copa").num_labels == 1


def test_wsc_marks_noun_phrase_and_pronoun_at_their_word_indices(data_dir):
    dm = SuperGlueDataModule(task="wsc", data_dir=data_dir)
    val = dm.load_examples("validation")
    assert val[0]["text"].endswith(
        "Still, *anyone* who knew that he was 19 years old could take his claim away from #him# ."
    )
    assert val[0]["text_pair"] == "Does him refer to anyone?" and val[0]["label"] == 0
    # span*_index are positions in text.split(): the official span text starts the word there in almost every
    # row (the rest are possessives like "Emma's" and one typo).
    rows = [json.loads(line) for line in Path(data_dir, "superglue/WSC/train.jsonl").read_text().splitlines()]
    hits = 0
    for row in rows:
        words, target = row["text"].split(), row["target"]
        hits += all(
            words[target[f"span{k}_index"]].lower().startswith(target[f"span{k}_text"].split()[0].lower())
            for k in (1, 2)
        )
    assert hits >= len(rows) - 2


def test_wic_marks_the_target_word_in_both_sentences(data_dir):
    val = SuperGlueDataModule(task="wic", data_dir=data_dir).load_examples("validation")
    assert val[0]["text"] == "An emerging professional *class*."
    assert val[0]["text_pair"].endswith("showed real *class*.")
    assert val[0]["meta"]["word"] == "class"


def test_rte_inside_superglue_is_the_jsonl_task_and_benchmarks_do_not_mix(tmp_path):
    dm = SuperGlueDataModule(task="rte", data_dir=str(tmp_path))
    assert dm.task == "superglue-rte" and dm.spec.benchmark == "superglue" and dm.spec.folder == "RTE"
    with pytest.raises(DataError, match=r"missing data file .*superglue/RTE/val.jsonl"):
        dm.load_examples("validation")
    with pytest.raises(ValueError, match="use SuperGlueDataModule"):
        GlueDataModule(task="cb")
    with pytest.raises(ValueError, match="use GlueDataModule"):
        SuperGlueDataModule(task="mrpc")
    write_jsonl(
        tmp_path / "superglue/RTE/val.jsonl",
        [
            {"premise": "A cat sat.", "hypothesis": "An animal sat.", "label": "entailment", "idx": 0},
            {"premise": "A cat sat.", "hypothesis": "A dog ran.", "label": "not_entailment", "idx": 1},
        ],
    )
    examples = dm.load_examples("validation")
    assert [(e["text_pair"], e["label"]) for e in examples] == [("An animal sat.", 0), ("A dog ran.", 1)]


def test_record_ranks_candidate_entities_from_the_official_layout(tmp_path):
    write_jsonl(
        tmp_path / "superglue/ReCoRD/val.jsonl", [record_row(0, ["Ann Lee"]), record_row(1, ["Ann Lee", "Lee"])]
    )
    write_jsonl(tmp_path / "superglue/ReCoRD/test.jsonl", [record_row(0, None)])
    dm = SuperGlueDataModule(task="record", data_dir=str(tmp_path), max_length=32)
    val = dm.load_examples("validation")
    assert [e["meta"]["entity"] for e in val] == ["Ann Lee", "Bob Ray", "Paris"] * 2
    assert [e["group"] for e in val] == [0, 0, 0, 1, 1, 1]
    assert [e["label"] for e in val] == [1, 0, 0, 1, 0, 0]
    assert val[0]["text"] == "Ann Lee was thanked by Bob Ray." and "@highlight" not in val[0]["text_pair"]
    assert [e["answer_em"] for e in val[:3]] == [1.0, 0.0, 0.0]
    # Second query, golds "Ann Lee" and "Lee": the best match of "Ann Lee" is exact; "Bob Ray" shares no token.
    assert val[4]["answer_f1"] == 0.0 and val[3]["answer_f1"] == 1.0
    assert token_f1("Ann Lee", "Lee") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    test = dm.load_examples("test")
    assert all(e["label"] is None and "answer_f1" not in e for e in test)
    batch = dm.collator(dm.encode(val).features)
    assert batch["group"].dtype == torch.long and batch["answer_f1"].dtype == torch.float32
    assert "meta" not in batch


def test_hub_layout_rows_are_formulated_like_local_ones():
    """The hub flattens MultiRC and ReCoRD and un-nests WSC's spans; the formulations read both layouts."""
    multirc = FORMULATIONS["multirc"](
        get_task("multirc"),
        [
            {
                "paragraph": "P",
                "question": "Q?",
                "answer": "A",
                "idx": {"paragraph": 3, "question": 7, "answer": i},
                "label": i % 2,
            }
            for i in range(3)
        ],
        "hub",
    )
    assert [e["group"] for e in multirc] == [0, 0, 0] and [e["label"] for e in multirc] == [0, 1, 0]
    assert multirc[2]["meta"] == {"passage": 3, "question": 7, "answer": 2}
    record = FORMULATIONS["record"](
        get_task("record"),
        [
            {
                "passage": "X met Y.\n@highlight\nZ",
                "query": "@placeholder met Y.",
                "entities": ["X", "Y", "X"],
                "entity_spans": {},
                "answers": ["X"],
                "idx": {"passage": 0, "query": 5},
            }
        ],
        "hub",
    )
    assert [(e["meta"], e["label"]) for e in record] == [
        ({"idx": 5, "entity": "X"}, 1),
        ({"idx": 5, "entity": "Y"}, 0),
    ]
    wsc = FORMULATIONS["wsc"](
        get_task("wsc"),
        [
            {
                "text": "The cup fell because it broke .",
                "span1_index": 0,
                "span2_index": 4,
                "span1_text": "The cup",
                "span2_text": "it",
                "idx": 0,
                "label": 1,
            }
        ],
        "hub",
    )
    assert wsc[0]["text"] == "*The cup* fell because #it# broke ." and wsc[0]["label"] == 1


def test_axb_and_axg_are_evaluation_only_diagnostics(tmp_path):
    write_jsonl(
        tmp_path / "superglue/AX-b/AX-b.jsonl",
        [
            {"sentence1": "S", "sentence2": "T", "label": label, "idx": i, "logic": ""}
            for i, label in enumerate(["entailment", "not_entailment", "entailment"])
        ],
    )
    write_jsonl(
        tmp_path / "superglue/AX-g/AX-g.jsonl",
        [
            {"premise": f"P{i}", "hypothesis": "H", "label": "entailment", "idx": i, "pair_id": 500 + i // 2}
            for i in range(4)
        ],
    )
    axb = SuperGlueDataModule(task="ax-b", data_dir=str(tmp_path), max_length=16)
    axb.setup("validate")
    assert axb.task == "axb" and axb.plan.train == [] and len(axb.plan.selection["test"]) == 3
    assert [e["label"] for e in axb.plan.report["test"]] == [0, 1, 0] and len(axb.plan.predict) == 3
    assert axb.eval_suffixes("val") == [""]
    with pytest.raises(DataError, match="evaluation-only diagnostic: train on rte"):
        axb.train_dataloader()
    axg = SuperGlueDataModule(task="axg", data_dir=str(tmp_path))
    assert [e["group"] for e in axg.load_examples("test")] == [500, 500, 501, 501]
    hub_like = FORMULATIONS["superglue_pair"](
        get_task("axg"), [{"premise": "P", "hypothesis": "H", "idx": i, "label": 0} for i in range(4)], "hub"
    )
    assert [e["group"] for e in hub_like] == [0, 0, 1, 1]


def test_bad_rows_are_one_line_errors(tmp_path):
    write_jsonl(
        tmp_path / "superglue/COPA/val.jsonl",
        [{"premise": "P", "choice1": "a", "choice2": "b", "question": "why", "label": 0, "idx": 0}],
    )
    with pytest.raises(DataError, match=r"COPA/val.jsonl row 1: question 'why' is neither 'cause' nor 'effect'"):
        SuperGlueDataModule(task="copa", data_dir=str(tmp_path)).load_examples("validation")
    write_jsonl(
        tmp_path / "superglue/WSC/val.jsonl",
        [
            {
                "text": "a b",
                "target": {"span1_index": 0, "span2_index": 9, "span1_text": "a", "span2_text": "it"},
                "label": True,
                "idx": 0,
            }
        ],
    )
    with pytest.raises(DataError, match="span2_index 9 is outside the text's 2 words"):
        SuperGlueDataModule(task="wsc", data_dir=str(tmp_path)).load_examples("validation")


def test_copa_trains_end_to_end_with_a_multiple_choice_head(data_dir):
    from transformers import BertForMultipleChoice

    dm = SuperGlueDataModule(task="copa", data_dir=data_dir, max_length=32, batch_size=4, train_subset=8)
    model = PETModule(task="copa", strategy="full", learning_rate=1e-4, init_seed=0)
    assert isinstance(model.model, BertForMultipleChoice) and model.model.classifier.out_features == 1
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (4, 2)  # one score per choice
    loss = model.loss(logits, batch["label"])
    assert float(loss) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, batch["label"])))
    before = model.model.classifier.weight.detach().clone()
    trainer = quiet_trainer(precision="32-true", max_steps=2, limit_val_batches=1)
    trainer.fit(model, datamodule=dm)
    assert not torch.equal(before, model.model.classifier.weight)
    assert 0.0 <= float(trainer.callback_metrics["val/accuracy"]) <= 1.0


def test_record_validates_end_to_end_from_the_logits(tmp_path):
    rows = [record_row(0, ["Ann Lee"]), record_row(1, ["Bob Ray"]), record_row(2, ["Paris", "Bob"])]
    write_jsonl(tmp_path / "superglue/ReCoRD/val.jsonl", rows)
    write_jsonl(tmp_path / "superglue/ReCoRD/train.jsonl", rows)
    dm = SuperGlueDataModule(task="record", data_dir=str(tmp_path), max_length=32, batch_size=2)
    model = PETModule(task="record", strategy="frozen", init_seed=0)
    metrics = quiet_trainer(precision="32-true").validate(model, datamodule=dm, verbose=False)[0]
    # The same figures by hand from the model's logits: per query, the candidate with the largest margin.
    features = dm.datasets["val"]["validation"].features
    model.eval()
    with torch.no_grad():
        logits = model(dm.collator(features)).float()
    margin = (logits[:, 1] - logits[:, 0]).tolist()
    chosen = [
        max((i for i in range(len(features)) if features[i]["group"] == g), key=lambda i: margin[i]) for g in range(3)
    ]
    f1 = sum(features[i]["answer_f1"] for i in chosen) / 3
    em = sum(features[i]["answer_em"] for i in chosen) / 3
    assert metrics["val/record_f1"] == pytest.approx(f1, abs=1e-6)
    assert metrics["val/record_em"] == pytest.approx(em, abs=1e-6)
    assert metrics["val/headline"] == pytest.approx((f1 + em) / 2, abs=1e-6)


def test_short_real_fine_tune_on_cb_beats_the_majority_class(data_dir):
    """Full fine-tuning of the offline MiniLM for 3 epochs on CB's 250 training examples (max_length 64)."""
    L.seed_everything(0)
    dm = SuperGlueDataModule(task="cb", data_dir=data_dir, max_length=64, batch_size=16, order_seed=0)
    model = PETModule(task="cb", strategy="full", learning_rate=1e-4, warmup_ratio=0.1, init_seed=0)
    trainer = quiet_trainer(max_epochs=3, check_val_every_n_epoch=3)
    trainer.fit(model, datamodule=dm)
    val = dm.plan.selection["validation"]
    train_labels = [e["label"] for e in dm.plan.train]
    majority = max(set(train_labels), key=train_labels.count)
    majority_accuracy = sum(e["label"] == majority for e in val) / len(val)  # 28 / 56 contradiction
    assert majority_accuracy == pytest.approx(0.5)
    # The majority class scores macro-F1 (2/3) / 3 on val, so the headline mean is (0.5 + 2/9) / 2 = 0.361.
    assert float(trainer.callback_metrics["val/accuracy"]) > majority_accuracy
    assert float(trainer.callback_metrics["val/headline"]) > (0.5 + 2 / 9) / 2
