"""Evaluation protocols: disjoint, covering and reproducible splits, on hand-made examples (the protocols are pure
functions of a source's examples and the split settings) and on real data through the data module."""

from __future__ import annotations

import ast
import dataclasses
from collections import Counter
from pathlib import Path

import pytest

import pet_lightning.data.protocol as protocol_module
from pet_lightning.data import DataError, GlueDataModule
from pet_lightning.data.protocol import PROTOCOLS, SplitSettings, make_plan, stratified_halves, subset
from pet_lightning.data.source import ExamplesSource, task_source
from pet_lightning.tasks import get_task


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


# ------------------------------------------------------------------------------------------ hand-made examples
def _examples(count: int, start: int = 0, group_size: int = 1) -> list[dict]:
    """Examples ``start .. start + count - 1``; ``group_size`` consecutive ones share a ``group`` (one passage)."""
    return [{"idx": i, "text": f"premise {i}", "text_pair": f"hypothesis {i}", "label": (i // group_size) % 2,
             **({"group": i // group_size} if group_size > 1 else {})} for i in range(start, start + count)]


def _source(train: int | None = 60, dev: int = 20, test: int = 6, task: str = "rte", group_size: int = 1):
    splits = {"validation": _examples(dev, 1000, group_size), "test": _examples(test, 2000)}
    if train is not None:
        splits["train"] = _examples(train, 0, group_size)
    return ExamplesSource(get_task(task), splits)


def _plan(source, **settings):
    return make_plan(source, SplitSettings(**settings))


def test_standard_on_given_examples_selects_and_reports_dev_and_predicts_test():
    plan = _plan(_source(), protocol="standard")
    assert plan.leaky and plan.selection is plan.report
    assert _ids(plan.selection["validation"]) == list(range(1000, 1020))
    assert _ids(plan.train) == list(range(60)) and plan.unused_train == []
    assert _ids(plan.predict) == list(range(2000, 2006))
    assert plan.origins == {"train": "train", "selection": "validation", "report": "validation"}


@pytest.mark.parametrize("group_size", [1, 2])
def test_dev_split_on_given_examples_halves_dev_keeps_groups_and_follows_seed_and_swap(group_size):
    source = _source(group_size=group_size)
    plan, again = _plan(source, protocol="dev_split"), _plan(source, protocol="dev_split")
    swapped = _plan(source, protocol="dev_split", swap=True)
    reseeded = _plan(source, protocol="dev_split", split_seed=7)
    select, report = plan.selection["validation"], plan.report["validation"]
    assert not plan.leaky and sorted(_ids(select) + _ids(report)) == list(range(1000, 1020))
    assert len(select) == len(report) == 10
    assert {e.get("group", e["idx"]) for e in select}.isdisjoint({e.get("group", e["idx"]) for e in report})
    # Label-stratified as far as whole groups allow: each label's counts differ by at most one group.
    labels = Counter(e["label"] for e in select), Counter(e["label"] for e in report)
    assert all(abs(labels[0][label] - labels[1][label]) <= group_size for label in (0, 1))
    assert _ids(again.selection["validation"]) == _ids(select)
    assert _ids(swapped.selection["validation"]) == _ids(report) and _ids(swapped.report["validation"]) == _ids(select)
    assert _ids(reseeded.selection["validation"]) != _ids(select)
    assert "dev half 2 selects" in swapped.description and "(split seed 7)" in reseeded.description


def test_train_holdout_on_given_examples_holds_out_ten_percent_of_train():
    plan = _plan(_source(), protocol="train_holdout")
    selection = plan.selection["validation"]
    assert len(selection) == 6 and sorted(_ids(plan.train) + _ids(selection)) == list(range(60))
    assert _ids(plan.report["validation"]) == list(range(1000, 1020))
    assert plan.origins == {"train": "train", "selection": "train", "report": "validation"}


def test_train_holdout_without_given_train_carves_three_parts_out_of_dev():
    plan = _plan(_source(train=None, dev=40), protocol="train_holdout")
    parts = [_ids(plan.train), _ids(plan.selection["validation"]), _ids(plan.report["validation"])]
    assert all(parts) and sorted(sum(parts, [])) == list(range(1000, 1040))
    assert len(parts[2]) == 20 and len(parts[1]) == 4
    assert plan.origins == {"train": "validation", "selection": "validation", "report": "validation"}
    with pytest.raises(DataError, match="no training split in the given examples: dev_split needs one"):
        _plan(_source(train=None), protocol="dev_split")


def test_train_holdout_tail_selects_on_the_last_tenth_of_train_in_file_order():
    plan = _plan(_source(train=55), protocol="train_holdout_tail")
    assert _ids(plan.selection["validation"]) == list(range(49, 55))  # ceil(0.1 * 55) = 6, as Hugging Face cuts
    assert _ids(plan.train) == list(range(49))


def test_train_subset_on_given_examples_is_fixed_by_its_seed_and_keeps_the_rest_for_the_audit():
    source = _source()
    plan = _plan(source, protocol="dev_split", train_subset=20)
    again = _plan(source, protocol="dev_split", train_subset=20)
    other = _plan(source, protocol="dev_split", train_subset=20, subset_seed=1)
    assert len(plan.train) == 20 and _ids(plan.train) == _ids(again.train) != _ids(other.train)
    assert sorted(_ids(plan.train) + _ids(plan.unused_train)) == list(range(60))
    assert _ids(plan.train) == sorted(_ids(plan.train))
    with pytest.raises(ValueError, match="train_subset=61 exceeds the 60 training examples"):
        _plan(source, train_subset=61)


def test_an_evaluation_only_task_evaluates_its_test_examples_under_every_protocol():
    source = ExamplesSource(get_task("axb"), {"test": _examples(8)})
    for protocol in PROTOCOLS:
        plan = _plan(source, protocol=protocol)
        assert plan.train == [] and plan.leaky
        assert _ids(plan.selection["test"]) == _ids(plan.report["test"]) == _ids(plan.predict) == list(range(8))


def test_split_settings_are_frozen_and_refuse_an_unknown_protocol():
    settings = SplitSettings()
    assert (settings.protocol, settings.swap, settings.split_seed, settings.train_subset, settings.subset_seed) == (
        "standard", False, 42, None, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.protocol = "dev_split"  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown protocol 'leaky': choose one of standard, dev_split"):
        SplitSettings(protocol="leaky")
    assert all(f.metadata.get("help") for f in dataclasses.fields(SplitSettings))


def test_the_protocols_never_import_the_data_module():
    tree = ast.parse(Path(protocol_module.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name and name.startswith("pet_lightning.data.base")}


@pytest.mark.parametrize("protocol", ["standard", "dev_split", "train_holdout"])
def test_the_data_module_plans_by_make_plan_over_its_source(protocol, data_dir):
    dm = GlueDataModule(task="rte", data_dir=data_dir, protocol=protocol, train_subset=50, split_seed=3)
    direct = make_plan(task_source(get_task("rte"), data_dir), SplitSettings(protocol, split_seed=3, train_subset=50))
    assert dm.plan_splits() == direct
