"""Evaluation protocols on real data: disjoint, covering and reproducible splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pet_lightning.data import DataError, GlueDataModule
from pet_lightning.data.protocol import stratified_halves, subset


def _ids(examples) -> list[int]:
    return [e["idx"] for e in examples]


def _module(data_dir, task="rte", **kwargs):
    if task == "cb":
        from pet_lightning.data import SuperGlueDataModule

        return SuperGlueDataModule(task=task, data_dir=data_dir, **kwargs)
    return GlueDataModule(task=task, data_dir=data_dir, **kwargs)


@pytest.mark.parametrize("task", ["rte", "cb"])
def test_dev_split_halves_are_disjoint_cover_dev_and_keep_label_balance(task, data_dir):
    dm = _module(data_dir, task, protocol="dev_split")
    plan = dm.plan_splits()
    dev = dm.load_examples("validation")
    select, report = plan.selection["validation"], plan.report["validation"]
    assert not plan.leaky
    assert not set(_ids(select)) & set(_ids(report))
    assert sorted(_ids(select) + _ids(report)) == sorted(_ids(dev))
    assert abs(len(select) - len(report)) <= 1
    # Stratified: each label's count differs by at most one between the halves.
    a, b = Counter(e["label"] for e in select), Counter(e["label"] for e in report)
    assert all(abs(a[label] - b[label]) <= 1 for label in set(a) | set(b))
    assert _ids(plan.train) == _ids(dm.load_examples("train"))


@pytest.mark.parametrize("task", ["rte", "cb"])
def test_splits_are_identical_across_runs_and_follow_seed_and_swap(task, data_dir):
    first = _module(data_dir, task, protocol="dev_split").plan_splits()
    again = _module(data_dir, task, protocol="dev_split").plan_splits()
    swapped = _module(data_dir, task, protocol="dev_split", swap=True).plan_splits()
    reseeded = _module(data_dir, task, protocol="dev_split", split_seed=7).plan_splits()
    assert _ids(first.selection["validation"]) == _ids(again.selection["validation"])
    assert _ids(first.report["validation"]) == _ids(again.report["validation"])
    assert _ids(swapped.selection["validation"]) == _ids(first.report["validation"])
    assert _ids(swapped.report["validation"]) == _ids(first.selection["validation"])
    assert _ids(reseeded.selection["validation"]) != _ids(first.selection["validation"])


@pytest.mark.parametrize("task", ["rte", "cb"])
def test_train_holdout_selects_on_ten_percent_of_train_and_reports_dev(task, data_dir):
    dm = _module(data_dir, task, protocol="train_holdout")
    plan = dm.plan_splits()
    train, dev = dm.load_examples("train"), dm.load_examples("validation")
    selection = plan.selection["validation"]
    assert not set(_ids(plan.train)) & set(_ids(selection))
    assert sorted(_ids(plan.train) + _ids(selection)) == _ids(train)
    assert len(selection) == round(0.1 * len(train))
    assert _ids(plan.report["validation"]) == _ids(dev)
    assert _ids(_module(data_dir, task, protocol="train_holdout").plan_splits().selection["validation"]) == _ids(
        selection
    )


def test_standard_is_marked_leaky(data_dir):
    plan = _module(data_dir, "rte", protocol="standard").plan_splits()
    assert plan.leaky and "leaky" in plan.description
    assert _ids(plan.selection["validation"]) == _ids(plan.report["validation"])


def test_train_subset_is_a_fixed_subset_of_train(data_dir):
    plan = _module(data_dir, "rte", protocol="dev_split", train_subset=100).plan_splits()
    again = _module(data_dir, "rte", protocol="dev_split", train_subset=100).plan_splits()
    other = _module(data_dir, "rte", protocol="dev_split", train_subset=100, subset_seed=1).plan_splits()
    assert len(plan.train) == 100 and _ids(plan.train) == _ids(again.train)
    assert _ids(plan.train) != _ids(other.train)
    assert set(_ids(plan.train)) <= set(range(2490)) and _ids(plan.train) == sorted(_ids(plan.train))
    with pytest.raises(ValueError, match="train_subset=0: use a positive number"):
        subset(plan.train, 0, 0)


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _rte_dev_only(root: Path, rows: int = 40) -> None:
    labels = ["entailment", "not_entailment"]
    _write(root / "glue/RTE/dev.tsv", ["index\tsentence1\tsentence2\tlabel"]
           + [f"{i}\tpremise {i}\thypothesis {i}\t{labels[i % 3 == 0]}" for i in range(rows)])


def test_train_holdout_without_train_carves_train_out_of_dev(tmp_path):
    _rte_dev_only(tmp_path)
    dm = GlueDataModule(task="rte", data_dir=str(tmp_path), protocol="train_holdout")
    plan = dm.plan_splits()
    parts = [_ids(plan.train), _ids(plan.selection["validation"]), _ids(plan.report["validation"])]
    assert all(parts)
    assert sorted(sum(parts, [])) == list(range(40))
    assert sum(len(p) for p in parts) == 40
    with pytest.raises(DataError, match="dev_split needs one; use protocol train_holdout"):
        GlueDataModule(task="rte", data_dir=str(tmp_path), protocol="dev_split").plan_splits()


def test_dev_split_reports_every_dev_set_of_mnli(tmp_path):
    header = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label"
    labels = ["entailment", "neutral", "contradiction"]
    rows = [f"{i}\t1\t1\tg\tx\tx\tx\tx\tP {i}.\tH {i}.\t{labels[i % 3]}\t{labels[i % 3]}" for i in range(12)]
    for name in ("train", "dev_matched", "dev_mismatched"):
        _write(tmp_path / f"glue/MNLI/{name}.tsv", [header, *rows])
    dm = GlueDataModule(task="mnli", data_dir=str(tmp_path), protocol="dev_split")
    plan = dm.plan_splits()
    assert list(plan.selection) == ["validation_matched"]
    assert [len(v) for v in plan.report.values()] == [6, 6]
    dm.plan = plan
    assert dm.eval_suffixes("test") == ["", "_mismatched"]


def test_halves_keep_groups_together():
    examples = [{"idx": i, "group": i // 3, "label": (i // 3) % 2} for i in range(24)]
    first, second = stratified_halves(examples, seed=3)
    assert {e["group"] for e in first}.isdisjoint({e["group"] for e in second})
    assert len(first) == len(second) == 12
