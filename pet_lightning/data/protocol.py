"""Evaluation protocols: which examples train, which select models, which are reported.

The "Revisiting Parameter-Efficient Tuning" study (Chen et al., EMNLP 2022) shows that selecting the best
checkpoint on the dev set and then reporting that same dev set inflates results. The protocols here keep the
selection and reporting examples apart:

* ``standard``: select and report on the official dev set. Leaky; every report marks it so.
* ``dev_split``: the official dev set is split in two label-stratified halves with a fixed seed; one half
  selects, the other is reported (``swap`` exchanges them, the study's "1-2" and "2-2" settings).
* ``train_holdout``: a fixed 10% of train selects; the official dev set is reported. Without an official train
  split, half of dev is reported and the other half is cut into train and a selection set.

``train_subset`` (with ``subset_seed``) then keeps a fixed random subset of the training examples. Every split is
a pure function of the data and its seed, so all runs and all machines see the same examples.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from pet_lightning.data.formulations import Example
from pet_lightning.data.readers import DataError

if TYPE_CHECKING:
    from pet_lightning.data.base import SplitPlan, TaskDataModule

HOLDOUT_FRACTION = 0.1


def _group_key(example: Example):
    # Examples that must stay together (MultiRC answers of one question) share a group.
    return example.get("group", example["idx"])


def stratified_halves(examples: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """Split examples in two halves of (near) equal size, stratified by label, keeping groups whole."""
    by_label: dict[object, list] = defaultdict(list)
    groups: dict[object, list[Example]] = defaultdict(list)
    for example in examples:
        groups[_group_key(example)].append(example)
    for key, members in groups.items():
        by_label[_stratum(members)].append(key)
    rng = random.Random(seed)
    first_keys, second_keys = set(), set()
    carry = 0
    for label in sorted(by_label, key=str):
        keys = sorted(by_label[label], key=str)
        rng.shuffle(keys)
        # Alternate which half gets the odd one out so the halves stay balanced overall.
        cut = (len(keys) + carry) // 2
        carry = (len(keys) + carry) % 2
        first_keys.update(keys[:cut])
        second_keys.update(keys[cut:])
    first = [e for e in examples if _group_key(e) in first_keys]
    second = [e for e in examples if _group_key(e) in second_keys]
    return first, second


def _stratum(members: list[Example]):
    label = members[0].get("label")
    return round(label) if isinstance(label, float) else label


def holdout(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out a fixed random fraction of the groups; returns (kept, held_out)."""
    keys = sorted({_group_key(e) for e in examples}, key=str)
    rng = random.Random(seed)
    rng.shuffle(keys)
    held = set(keys[: max(1, round(len(keys) * fraction))])
    return [e for e in examples if _group_key(e) not in held], [e for e in examples if _group_key(e) in held]


def subset(examples: list[Example], count: int | None, seed: int) -> list[Example]:
    """A fixed random subset of ``count`` examples (whole groups), in the original order."""
    if count is None or count >= len(examples):
        return examples
    if count < 1:
        raise ValueError(f"train_subset={count}: use a positive number of examples")
    kept, held = holdout(examples, count / len(examples), seed)
    return held


def _load_train(dm: TaskDataModule) -> list[Example]:
    if "train" not in dm.available_splits():
        raise DataError(
            f"task {dm.task} has no training split in {dm.data_dir or 'the hub'}: add train "
            f"file {dm.spec.files.get('train', 'train')} there, or use protocol dev_split / train_holdout over "
            "the validation set (set data.protocol)"
        )
    return dm.load_examples("train")


def _predict(dm: TaskDataModule) -> list[Example]:
    tests = [s for s in dm.available_splits() if s.startswith("test")]
    return dm.load_examples(tests[0]) if tests else []


def _eval_sets(dm: TaskDataModule) -> dict[str, list[Example]]:
    return {split: dm.load_examples(split) for split in dm.spec.eval_splits}


def standard(dm: TaskDataModule) -> SplitPlan:
    from pet_lightning.data.base import SplitPlan

    evals = _eval_sets(dm)
    return SplitPlan(
        train=subset(_load_train(dm), dm.train_subset, dm.subset_seed),
        selection=evals,
        report=evals,
        predict=_predict(dm),
        leaky=True,
        description="standard: selected and reported on the official dev set (leaky)",
    )


def dev_split(dm: TaskDataModule) -> SplitPlan:
    from pet_lightning.data.base import SplitPlan

    if "train" not in dm.available_splits():
        raise DataError(
            f"task {dm.task} has no training split in {dm.data_dir or 'the hub'}: dev_split needs one; use "
            "protocol train_holdout, which carves train, selection and report sets out of the validation set"
        )
    evals = _eval_sets(dm)
    headline_split = dm.spec.validation_split
    selection: dict[str, list[Example]] = {}
    report: dict[str, list[Example]] = {}
    for split, examples in evals.items():
        first, second = stratified_halves(examples, dm.split_seed)
        select_half, report_half = (second, first) if dm.swap else (first, second)
        if not select_half or not report_half:
            raise DataError(
                f"task {dm.task}: the {split} split has {len(examples)} example(s), too few to halve for "
                "dev_split; use protocol standard or train_holdout"
            )
        # Only the headline split selects; every dev set (MNLI: matched and mismatched) keeps a reported half.
        if split == headline_split:
            selection[split] = select_half
        report[split] = report_half
    return SplitPlan(
        train=subset(_load_train(dm), dm.train_subset, dm.subset_seed),
        selection=selection,
        report=report,
        predict=_predict(dm),
        description=f"dev_split: dev half {'2' if dm.swap else '1'} selects, the other half is reported "
        f"(split seed {dm.split_seed})",
    )


def train_holdout(dm: TaskDataModule) -> SplitPlan:
    from pet_lightning.data.base import SplitPlan

    evals = _eval_sets(dm)
    if "train" in dm.available_splits():
        train, selection = holdout(_load_train(dm), HOLDOUT_FRACTION, dm.split_seed)
        report = evals
        description = f"train_holdout: {HOLDOUT_FRACTION:.0%} of train selects, the official dev set is reported"
    else:
        # Without a train split, the official dev set is cut three ways: report half, 10% selection, rest train.
        headline_split = dm.spec.validation_split
        rest, reported = stratified_halves(evals[headline_split], dm.split_seed)
        train, selection = holdout(rest, HOLDOUT_FRACTION * 2, dm.split_seed)
        report = {headline_split: reported}
        description = (
            "train_holdout without official train: half of dev is reported, the other half is split into train "
            f"and a {HOLDOUT_FRACTION * 2:.0%} selection set"
        )
    return SplitPlan(
        train=subset(train, dm.train_subset, dm.subset_seed),
        selection={dm.spec.validation_split: selection},
        report=report,
        predict=_predict(dm),
        description=description + f" (split seed {dm.split_seed})",
    )


PROTOCOLS: dict[str, Callable[[TaskDataModule], SplitPlan]] = {
    "standard": standard,
    "dev_split": dev_split,
    "train_holdout": train_holdout,
}


def make_plan(dm: TaskDataModule) -> SplitPlan:
    return PROTOCOLS[dm.protocol](dm)
