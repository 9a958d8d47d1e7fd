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
the data and its seed, so all runs and all machines see the same examples: :func:`make_plan` takes the examples'
source (:mod:`pet_lightning.data.source`) and the :class:`SplitSettings`, and returns the :class:`SplitPlan`.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from pet_lightning.data.formulations import Example
from pet_lightning.data.grouping import connected_groups
from pet_lightning.data.readers import DataError
from pet_lightning.data.source import ExampleSource

HOLDOUT_FRACTION = 0.1
VARIANT_SEED = 0  # the subset_seed default: a variant's examples are the same draw as train_subset's


@dataclass
class SplitPlan:
    """Which examples train, which select models and which are reported.

    ``selection`` feeds the validation loop (early stopping, the kept checkpoint); ``report`` feeds the test
    loop (the figure a paper would print). ``leaky`` marks plans where both are the same examples.
    ``origins`` names the official file each part was drawn from (``train``, ``selection``, ``report`` ->
    ``train`` / ``validation``...): two parts from one file were split by us, two from different files by the
    benchmark. ``unused_train`` holds what ``train_subset`` left out (for the leak audit).
    """

    train: list[Example]
    selection: dict[str, list[Example]]
    report: dict[str, list[Example]]
    predict: list[Example] = field(default_factory=list)
    leaky: bool = False
    description: str = ""
    origins: dict[str, str] = field(default_factory=dict)
    unused_train: list[Example] = field(default_factory=list)


@dataclass(frozen=True)
class SplitSettings:
    """How a task's examples are split: the protocol and its seeds (the data module's arguments of the same names)."""

    protocol: str = field(default="standard", metadata={"help": "standard (select and report on dev: leaky), "
                                                                "dev_split, train_holdout or train_holdout_tail"})
    swap: bool = field(default=False, metadata={"help": "With dev_split, swap the halves that select and report"})
    split_seed: int = field(default=42, metadata={"help": "Seed of the protocol's split (fixed across runs)"})
    train_subset: int | None = field(
        default=None, metadata={"help": "Train on this many examples only (None: all), drawn with subset_seed"}
    )
    subset_seed: int = field(default=0, metadata={"help": "Seed of the training subset"})

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")


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


def _load_train(source: ExampleSource) -> list[Example]:
    if "train" not in source.available_splits():
        raise DataError(
            f"task {source.spec.name} has no training split in {source.location}: add train "
            f"file {source.spec.files.get('train', 'train')} there, or set data.protocol train_holdout, which carves "
            "train, selection and report sets out of the validation set"
        )
    return source.load_examples("train")


def _predict(source: ExampleSource) -> list[Example]:
    tests = [s for s in source.available_splits() if s.startswith("test")]
    return source.load_examples(tests[0]) if tests else []


def _eval_sets(source: ExampleSource) -> dict[str, list[Example]]:
    return {split: source.load_examples(split) for split in source.spec.eval_splits}


def standard(source: ExampleSource, settings: SplitSettings) -> SplitPlan:
    evals = _eval_sets(source)
    train, unused = subset(_load_train(source), settings.train_subset, settings.subset_seed, source.spec.name)
    validation = source.spec.validation_split
    return SplitPlan(
        train=train,
        selection=evals,
        report=evals,
        predict=_predict(source),
        leaky=True,
        description="standard: selected and reported on the official dev set (leaky)",
        origins={"train": "train", "selection": validation, "report": validation},
        unused_train=unused,
    )


def dev_split(source: ExampleSource, settings: SplitSettings) -> SplitPlan:
    if "train" not in source.available_splits():
        raise DataError(
            f"task {source.spec.name} has no training split in {source.location}: dev_split needs one; use "
            "protocol train_holdout, which carves train, selection and report sets out of the validation set"
        )
    evals = _eval_sets(source)
    headline_split = source.spec.validation_split
    selection: dict[str, list[Example]] = {}
    report: dict[str, list[Example]] = {}
    for split, examples in evals.items():
        first, second = stratified_halves(examples, settings.split_seed, source.spec.name)
        select_half, report_half = (second, first) if settings.swap else (first, second)
        if not select_half or not report_half:
            raise DataError(
                f"task {source.spec.name}: the {split} split has {len(examples)} example(s), too few to halve for "
                "dev_split; use protocol standard or train_holdout"
            )
        # Only the headline split selects; every dev set (MNLI: matched and mismatched) keeps a reported half.
        if split == headline_split:
            selection[split] = select_half
        report[split] = report_half
    train, unused = subset(_load_train(source), settings.train_subset, settings.subset_seed, source.spec.name)
    return SplitPlan(
        train=train,
        selection=selection,
        report=report,
        predict=_predict(source),
        description=f"dev_split: dev half {'2' if settings.swap else '1'} selects, the other half is reported "
        f"(split seed {settings.split_seed})",
        origins={"train": "train", "selection": headline_split, "report": headline_split},
        unused_train=unused,
    )


def train_holdout(source: ExampleSource, settings: SplitSettings) -> SplitPlan:
    evals = _eval_sets(source)
    headline_split = source.spec.validation_split
    if "train" in source.available_splits():
        train, selection = holdout(_load_train(source), HOLDOUT_FRACTION, settings.split_seed, source.spec.name)
        report = evals
        origins = {"train": "train", "selection": "train", "report": headline_split}
        description = f"train_holdout: {HOLDOUT_FRACTION:.0%} of train selects, the official dev set is reported"
    else:
        # Without a train split, the official dev set is cut three ways: report half, 10% selection, rest train.
        rest, reported = stratified_halves(evals[headline_split], settings.split_seed, source.spec.name)
        train, selection = holdout(rest, HOLDOUT_FRACTION * 2, settings.split_seed, source.spec.name)
        report = {headline_split: reported}
        origins = {"train": headline_split, "selection": headline_split, "report": headline_split}
        description = (
            "train_holdout without official train: half of dev is reported, the other half is split into train "
            f"and a {HOLDOUT_FRACTION * 2:.0%} selection set"
        )
    train, unused = subset(train, settings.train_subset, settings.subset_seed, source.spec.name)
    return SplitPlan(
        train=train,
        selection={headline_split: selection},
        report=report,
        predict=_predict(source),
        description=description + f" (split seed {settings.split_seed})",
        origins=origins,
        unused_train=unused,
    )


def train_holdout_tail(source: ExampleSource, settings: SplitSettings) -> SplitPlan:
    examples = _load_train(source)
    # Hugging Face's train_test_split takes ceil(test_size * n) test examples.
    cut = len(examples) - -(-len(examples) // round(1 / HOLDOUT_FRACTION))
    train, unused = subset(examples[:cut], settings.train_subset, settings.subset_seed, source.spec.name)
    headline_split = source.spec.validation_split
    return SplitPlan(
        train=train,
        selection={headline_split: examples[cut:]},
        report=_eval_sets(source),
        predict=_predict(source),
        description=f"train_holdout_tail: the last {HOLDOUT_FRACTION:.0%} of the train file selects (the Revisiting "
                    "code's split), the official dev set is reported",
        origins={"train": "train", "selection": "train", "report": headline_split},
        unused_train=unused,
    )


# Splits copied from a study's code, not drawn by the rules above (they may share text across their boundary):
# `cli.py audit`'s default "all" leaves them out.
STUDY_SPLITS = frozenset({"train_holdout_tail"})
PROTOCOLS: dict[str, Callable[[ExampleSource, SplitSettings], SplitPlan]] = {
    "standard": standard,
    "dev_split": dev_split,
    "train_holdout": train_holdout,
    "train_holdout_tail": train_holdout_tail,
}


@dataclass(frozen=True)
class VariantSource:
    """A task variant ``<task>@<count>`` (:attr:`~pet_lightning.tasks.TaskSpec.train_subset`): its task's examples,
    the training split cut to a fixed subset of ``count`` (drawn as ``train_subset`` draws, seed
    :data:`VARIANT_SEED`). The protocols then split that as the task's whole training set: under
    ``train_holdout`` 10% of the ``count`` examples select, as they would for a task of that size."""

    base: ExampleSource

    @property
    def spec(self):
        return self.base.spec

    @property
    def location(self) -> str:
        return self.base.location

    def available_splits(self) -> list[str]:
        return self.base.available_splits()

    def load_examples(self, split: str) -> list[Example]:
        examples = self.base.load_examples(split)
        if split != "train":
            return examples
        return subset(examples, self.spec.train_subset, VARIANT_SEED, self.spec.name)[0]


def make_plan(source: ExampleSource, settings: SplitSettings) -> SplitPlan:
    """The split plan of ``source``'s examples under ``settings``: a pure function of the examples and the seeds.

    A task without a training split in the task table (the AX-b / AX-g diagnostics) has nothing to split: its
    labelled test file is selected on, reported and predicted, whatever the protocol. A task variant's training
    split is its fixed subset (:class:`VariantSource`).
    """
    if source.spec.train_subset is not None:
        if "train" not in source.available_splits():
            raise DataError(f"task {source.spec.name} subsamples the training split, which {source.location} lacks: "
                            f"add {source.spec.files.get('train', 'train')} there, or use the task itself")
        source = VariantSource(source)
    if "train" in source.spec.files:
        return PROTOCOLS[settings.protocol](source, settings)
    examples = source.load_examples("test")
    return SplitPlan(
        train=[],
        selection={"test": examples},
        report={"test": examples},
        predict=examples,
        leaky=True,
        description=f"{source.spec.name}: evaluation-only diagnostic; its labelled test file is evaluated",
    )
