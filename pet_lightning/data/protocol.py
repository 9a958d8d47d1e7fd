"""Evaluation protocols: which examples train, which select models, which are reported.

The "Revisiting Parameter-Efficient Tuning" study (Chen et al., EMNLP 2022) shows that selecting the best
checkpoint on the dev set and then reporting that same dev set inflates results. The protocols here keep the
selection and reporting examples apart:

* ``standard``: select and report on the official dev set. Leaky; every report marks it so.
* ``dev_split``: the official dev set is split in two label-stratified halves with a fixed seed; one half
  selects, the other is reported (``swap`` exchanges them, the study's "1-2" and "2-2" settings).
* ``train_holdout``: a fixed 10% of train selects; the official dev set is reported. Without an official train
  split, half of dev is reported and the other half is cut into train and a selection set.
* ``train_holdout_tail``: the Revisiting code's split, the last 10% of the train file selects (neither random,
  stratified nor group-aware: ``train_test_split(test_size=0.1, shuffle=False)``, PETuning
  ``tasks/glue/dataset.py:73``, ``tasks/superglue/dataset.py:88``); the official dev set is reported.

``train_subset`` (with ``subset_seed``) then keeps a fixed random subset of the training examples. Every boundary
drawn here moves whole connected groups (examples sharing a normalised passage or sentence, or the task's own
key: :mod:`pet_lightning.data.grouping`), label-stratified as far as whole groups allow, so no text is seen on
both sides; ``python cli.py audit`` prints what is shared across each boundary. Every split is a pure function of
the data and its seed, so all runs and all machines see the same examples.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from pet_lightning.data.formulations import Example
from pet_lightning.data.grouping import connected_groups
from pet_lightning.data.readers import DataError

if TYPE_CHECKING:
    from pet_lightning.data.base import SplitPlan, TaskDataModule

HOLDOUT_FRACTION = 0.1


def _stratum(examples: list[Example], members: list[int]):
    # A group's stratum is its most frequent label (scores rounded), ties broken by the first such label.
    labels = [_label_key(examples[i].get("label")) for i in members]
    return max(labels, key=lambda label: (labels.count(label), -labels.index(label)))


def _strata(examples: list[Example], task: str, seed: int) -> list[list[list[int]]]:
    """Connected groups by stratum (sorted by label), each stratum's groups in a seeded random order."""
    by_label: dict[object, list[list[int]]] = defaultdict(list)
    for members in connected_groups(examples, task):
        by_label[_stratum(examples, members)].append(members)
    rng = random.Random(seed)
    strata = []
    for label in sorted(by_label, key=str):
        groups = by_label[label]
        rng.shuffle(groups)
        strata.append(groups)
    return strata


def _pick(examples: list[Example], chosen: set[int]) -> tuple[list[Example], list[Example]]:
    """(not chosen, chosen), each in the original order."""
    return [e for i, e in enumerate(examples) if i not in chosen], [e for i, e in enumerate(examples) if i in chosen]


def stratified_halves(examples: list[Example], seed: int, task: str = "") -> tuple[list[Example], list[Example]]:
    """Split examples in two halves of (near) equal size, label-stratified as far as whole groups allow.

    Groups (:func:`~pet_lightning.data.grouping.connected_groups`) never straddle the halves. Groups are placed
    largest first (equal sizes in a seeded order), each in the half where the label counts of the two halves
    end up closest (then the sizes; then a seeded coin), which balances labels even for mixed-label groups.
    """
    rng = random.Random(seed)
    groups = connected_groups(examples, task)
    rng.shuffle(groups)
    groups.sort(key=len, reverse=True)
    labels = [_label_key(e.get("label")) for e in examples]
    counts: list[Counter] = [Counter(), Counter()]
    sizes = [0, 0]
    first: set[int] = set()
    for members in groups:
        added = Counter(labels[i] for i in members)
        scores = [_imbalance(counts, sizes, added, len(members), side) for side in (0, 1)]
        side = rng.randrange(2) if scores[0] == scores[1] else int(scores[1] < scores[0])
        counts[side].update(added)
        sizes[side] += len(members)
        if side == 0:
            first.update(members)
    second, first_half = _pick(examples, first)
    return first_half, second


def _imbalance(counts: list[Counter], sizes: list[int], added: Counter, size: int, side: int) -> tuple[int, int]:
    """(label-count difference, size difference) between the halves if a group goes to ``side``."""
    after = [counts[0].copy(), counts[1].copy()]
    after[side].update(added)
    new_sizes = list(sizes)
    new_sizes[side] += size
    labels = set(after[0]) | set(after[1])
    return sum(abs(after[0][k] - after[1][k]) for k in labels), abs(new_sizes[0] - new_sizes[1])


def _label_key(label: object) -> object:
    return round(label) if isinstance(label, float) else label


def _targets(sizes: list[int], total_target: int) -> list[int]:
    """Split ``total_target`` over strata in proportion to their sizes (largest remainders), exactly."""
    total = sum(sizes)
    exact = [total_target * size / total for size in sizes]
    targets = [int(share) for share in exact]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - targets[i]), i))
    for i in order[: total_target - sum(targets)]:
        targets[i] += 1
    return targets


def _draw(examples: list[Example], count: int, seed: int, task: str) -> set[int]:
    """Positions of about ``count`` examples in whole groups, label-stratified: each stratum takes groups in a
    seeded order while they fit its share; exact whenever the groups allow it."""
    strata = _strata(examples, task, seed)
    targets = _targets([sum(len(g) for g in groups) for groups in strata], count)
    chosen: set[int] = set()
    for groups, target in zip(strata, targets):
        taken = 0
        for members in groups:
            if taken + len(members) <= target:
                chosen.update(members)
                taken += len(members)
        if taken == 0 and target > 0:
            # Every group of the stratum is larger than its share: take the first, rather than none.
            chosen.update(groups[0])
    return chosen


def holdout(
    examples: list[Example], fraction: float, seed: int, task: str = ""
) -> tuple[list[Example], list[Example]]:
    """Hold out a fixed random, label-stratified fraction of the examples in whole groups; (kept, held_out)."""
    count = max(1, round(len(examples) * fraction))
    return _pick(examples, _draw(examples, count, seed, task))


def subset(
    examples: list[Example], count: int | None, seed: int, task: str = ""
) -> tuple[list[Example], list[Example]]:
    """A fixed random subset of ``count`` examples in whole groups, label-stratified, in the original order;
    returns (subset, left out)."""
    if count is not None and count > len(examples):
        # Clamping silently would make e.g. a "1k vs 2k examples" comparison compare the same data.
        raise ValueError(f"train_subset={count} exceeds the {len(examples)} training examples of {task or 'the task'} "
                         f"under this protocol: use train_subset <= {len(examples)}, or leave it unset for all")
    if count is None or count == len(examples):
        return examples, []
    if count < 1:
        raise ValueError(f"train_subset={count}: use a positive number of examples")
    left_out, kept = _pick(examples, _draw(examples, count, seed, task))
    return kept, left_out


def _load_train(dm: TaskDataModule) -> list[Example]:
    if "train" not in dm.available_splits():
        raise DataError(
            f"task {dm.task} has no training split in {dm.data_dir or 'the hub'}: add train "
            f"file {dm.spec.files.get('train', 'train')} there, or set data.protocol train_holdout, which carves "
            "train, selection and report sets out of the validation set"
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
    train, unused = subset(_load_train(dm), dm.train_subset, dm.subset_seed, dm.task)
    validation = dm.spec.validation_split
    return SplitPlan(
        train=train,
        selection=evals,
        report=evals,
        predict=_predict(dm),
        leaky=True,
        description="standard: selected and reported on the official dev set (leaky)",
        origins={"train": "train", "selection": validation, "report": validation},
        unused_train=unused,
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
        first, second = stratified_halves(examples, dm.split_seed, dm.task)
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
    train, unused = subset(_load_train(dm), dm.train_subset, dm.subset_seed, dm.task)
    return SplitPlan(
        train=train,
        selection=selection,
        report=report,
        predict=_predict(dm),
        description=f"dev_split: dev half {'2' if dm.swap else '1'} selects, the other half is reported "
        f"(split seed {dm.split_seed})",
        origins={"train": "train", "selection": headline_split, "report": headline_split},
        unused_train=unused,
    )


def train_holdout(dm: TaskDataModule) -> SplitPlan:
    from pet_lightning.data.base import SplitPlan

    evals = _eval_sets(dm)
    headline_split = dm.spec.validation_split
    if "train" in dm.available_splits():
        train, selection = holdout(_load_train(dm), HOLDOUT_FRACTION, dm.split_seed, dm.task)
        report = evals
        origins = {"train": "train", "selection": "train", "report": headline_split}
        description = f"train_holdout: {HOLDOUT_FRACTION:.0%} of train selects, the official dev set is reported"
    else:
        # Without a train split, the official dev set is cut three ways: report half, 10% selection, rest train.
        rest, reported = stratified_halves(evals[headline_split], dm.split_seed, dm.task)
        train, selection = holdout(rest, HOLDOUT_FRACTION * 2, dm.split_seed, dm.task)
        report = {headline_split: reported}
        origins = {"train": headline_split, "selection": headline_split, "report": headline_split}
        description = (
            "train_holdout without official train: half of dev is reported, the other half is split into train "
            f"and a {HOLDOUT_FRACTION * 2:.0%} selection set"
        )
    train, unused = subset(train, dm.train_subset, dm.subset_seed, dm.task)
    return SplitPlan(
        train=train,
        selection={headline_split: selection},
        report=report,
        predict=_predict(dm),
        description=description + f" (split seed {dm.split_seed})",
        origins=origins,
        unused_train=unused,
    )


def train_holdout_tail(dm: TaskDataModule) -> SplitPlan:
    from pet_lightning.data.base import SplitPlan

    examples = _load_train(dm)
    # Hugging Face's train_test_split takes ceil(test_size * n) test examples.
    cut = len(examples) - -(-len(examples) // round(1 / HOLDOUT_FRACTION))
    train, unused = subset(examples[:cut], dm.train_subset, dm.subset_seed, dm.task)
    headline_split = dm.spec.validation_split
    return SplitPlan(
        train=train,
        selection={headline_split: examples[cut:]},
        report=_eval_sets(dm),
        predict=_predict(dm),
        description=f"train_holdout_tail: the last {HOLDOUT_FRACTION:.0%} of the train file selects (the Revisiting "
                    "code's split), the official dev set is reported",
        origins={"train": "train", "selection": "train", "report": headline_split},
        unused_train=unused,
    )


# Splits copied from a study's code, not drawn by the rules above (they may share text across their boundary):
# `cli.py audit`'s default "all" leaves them out.
STUDY_SPLITS = frozenset({"train_holdout_tail"})
PROTOCOLS: dict[str, Callable[[TaskDataModule], SplitPlan]] = {
    "standard": standard,
    "dev_split": dev_split,
    "train_holdout": train_holdout,
    "train_holdout_tail": train_holdout_tail,
}


def make_plan(dm: TaskDataModule) -> SplitPlan:
    return PROTOCOLS[dm.protocol](dm)
