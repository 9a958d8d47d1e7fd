"""Task facts for GLUE and SuperGLUE, kept as data in one table.

Each :class:`TaskSpec` says where a task's files live (local official layout and the Hugging Face hub),
which columns hold the text, what the labels are, how the model is asked (the formulation), which metrics
the benchmark papers report, and how big the training set is (which decides the resource group used by the
"Revisiting Parameter-Efficient Tuning" study: low < 1k, medium < 10k, high >= 10k training examples).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

ProblemKind = Literal["classification", "regression", "multiple_choice"]
ResourceGroup = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class TaskSpec:
    """Everything the library needs to know about one benchmark task.

    Args:
        name: Lower-case task name used in configs (``rte``, ``sts-b``, ``cb``...).
        benchmark: ``glue`` or ``superglue`` (the sub-folder of the data root); ``task_file`` for a user's task.
        folder: Folder of the task in the official layout, e.g. ``RTE`` for ``<root>/glue/RTE/train.tsv``.
        files: Official file name of each split (``train``, ``validation``, ``test``; MNLI has two dev sets).
        hub_path: Hugging Face dataset repository used when no local data root is given.
        hub_config: Configuration name of the task in ``hub_path``.
        hub_splits: Hub split name for each of our split names, where they differ.
        columns: Our field name -> column name in the local files (``text_a``, ``text_b``, ``label``).
        headerless: Positional columns for files without a header row (CoLA train/dev).
        hub_columns: Our field name -> column name on the hub.
        label_values: The label strings as written in local files, in label-id order (empty for regression).
        kind: ``classification``, ``regression`` (STS-B) or ``multiple_choice`` (COPA).
        formulation: How examples become model inputs; ``pair`` is a plain (sentence, sentence) input, the
            SuperGLUE tasks name their own (``wic``, ``wsc``, ``copa``, ``multirc``, ``record``...).
        metrics: Metric names logged as ``val/<metric>`` and ``test/<metric>``.
        headline: The single metric that ranks runs (logged also as ``val/headline``).
        train_size: Number of official training examples; decides the resource group.
        eval_splits: The evaluation splits and the suffix their metrics get (MNLI: matched / mismatched).
        has_train: False where the official training split is not distributed with the data (BoolQ here).
        train_subset: Set on a task's variant ``<task>@<count>`` (``sst-2@800``): the task as if its training
            split were a fixed subset of this many examples (the protocols split those, so ``train_holdout``
            selects on 10% of them), so one sweep can put the same task in several resource groups;
            ``train_size`` stays the official one.
    """

    name: str
    benchmark: Literal["glue", "superglue", "task_file"]
    folder: str
    files: dict[str, str]
    hub_path: str
    hub_config: str
    columns: dict[str, str]
    label_values: tuple[str, ...]
    kind: ProblemKind
    metrics: tuple[str, ...]
    headline: str
    train_size: int
    formulation: str = "pair"
    hub_columns: dict[str, str] = field(default_factory=dict)
    hub_splits: dict[str, str] = field(default_factory=dict)
    headerless: dict[str, int] = field(default_factory=dict)
    eval_splits: dict[str, str] = field(default_factory=lambda: {"validation": ""})
    has_train: bool = True
    train_subset: int | None = None

    def __post_init__(self) -> None:
        if self.headline not in self.metrics:
            raise ValueError(f"task {self.name}: headline metric {self.headline!r} is not among {self.metrics}")
        if self.kind == "classification" and len(self.label_values) < 2:
            raise ValueError(f"task {self.name}: a classification task needs at least two label values")

    @property
    def num_labels(self) -> int:
        """Output width of the head: 1 for regression and multiple choice (one score per choice)."""
        return 1 if self.kind in ("regression", "multiple_choice") else len(self.label_values)

    @property
    def resource_group(self) -> ResourceGroup:
        """Group of the official training set; a run that trains on fewer examples belongs to
        :func:`resource_group_for` of what it trained on."""
        return resource_group_for(self.train_size)

    @property
    def reference(self) -> str:
        """What names the task in configs and checkpoints: its name (a task file's spec: the file's path)."""
        return self.name

    @property
    def validation_split(self) -> str:
        """The evaluation split whose headline metric selects models (MNLI: matched)."""
        return next(iter(self.eval_splits))


def resource_group_for(train_examples: int) -> ResourceGroup:
    """The study's resource groups (Chen et al., 2022): low < 1k, medium < 10k, high >= 10k training examples."""
    if train_examples < 1_000:
        return "low"
    if train_examples < 10_000:
        return "medium"
    return "high"


def _glue(name: str, folder: str, **kwargs) -> TaskSpec:
    files = kwargs.pop("files", {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"})
    return TaskSpec(
        name=name, benchmark="glue", folder=folder, files=files, hub_path="nyu-mll/glue", **kwargs
    )


_PAIR_HUB = {"text_a": "sentence1", "text_b": "sentence2", "label": "label"}
_BINARY = ("0", "1")
_ENTAILMENT = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {}

TASK_FINDERS: list[Callable[[str], TaskSpec | None]] = []
"""Where :func:`get_task` looks for a name the table lacks, in order; the data package adds task files
(:func:`pet_lightning.data.task_files.find_task`), so this table knows nothing of how they are read."""


def register_task(spec: TaskSpec, *aliases: str) -> TaskSpec:
    """Add a task to the table under its name and any aliases (e.g. ``stsb`` for ``sts-b``)."""
    for key in (spec.name, *aliases):
        TASKS[key] = spec
    return spec


def register_task_finder(finder: Callable[[str], TaskSpec | None]) -> Callable[[str], TaskSpec | None]:
    """Let :func:`get_task` find tasks outside the table with ``finder`` (a name -> its task, or None)."""
    TASK_FINDERS.append(finder)
    return finder


register_task(
    _glue(
        "cola", "CoLA", hub_config="cola",
        columns={"text_a": "sentence", "label": "label"}, headerless={"text_a": 3, "label": 1},
        hub_columns={"text_a": "sentence", "label": "label"},
        label_values=_BINARY, kind="classification", metrics=("mcc", "accuracy"), headline="mcc",
        train_size=8_551,
    )
)
register_task(
    _glue(
        "sst-2", "SST-2", hub_config="sst2",
        columns={"text_a": "sentence", "label": "label"}, hub_columns={"text_a": "sentence", "label": "label"},
        label_values=_BINARY, kind="classification", metrics=("accuracy",), headline="accuracy",
        train_size=67_349,
    ),
    "sst2",
)
register_task(
    _glue(
        "mrpc", "MRPC", hub_config="mrpc",
        columns={"text_a": "#1 String", "text_b": "#2 String", "label": "Quality"}, hub_columns=_PAIR_HUB,
        label_values=_BINARY, kind="classification", metrics=("f1", "accuracy"), headline="f1",
        train_size=3_668,
    )
)
register_task(
    _glue(
        "sts-b", "STS-B", hub_config="stsb",
        columns={"text_a": "sentence1", "text_b": "sentence2", "label": "score"}, hub_columns=_PAIR_HUB,
        label_values=(), kind="regression", metrics=("pearson", "spearman"), headline="pearson",
        train_size=5_749,
    ),
    "stsb",
)
register_task(
    _glue(
        "qqp", "QQP", hub_config="qqp",
        columns={"text_a": "question1", "text_b": "question2", "label": "is_duplicate"},
        hub_columns={"text_a": "question1", "text_b": "question2", "label": "label"},
        label_values=_BINARY, kind="classification", metrics=("f1", "accuracy"), headline="f1",
        train_size=363_846,
    )
)
register_task(
    _glue(
        "mnli", "MNLI", hub_config="mnli",
        files={
            "train": "train.tsv",
            "validation_matched": "dev_matched.tsv",
            "validation_mismatched": "dev_mismatched.tsv",
            "test_matched": "test_matched.tsv",
            "test_mismatched": "test_mismatched.tsv",
        },
        columns={"text_a": "sentence1", "text_b": "sentence2", "label": "gold_label"},
        hub_columns={"text_a": "premise", "text_b": "hypothesis", "label": "label"},
        label_values=("entailment", "neutral", "contradiction"), kind="classification",
        metrics=("accuracy",), headline="accuracy", train_size=392_702,
        eval_splits={"validation_matched": "", "validation_mismatched": "_mismatched"},
    )
)
register_task(
    _glue(
        "qnli", "QNLI", hub_config="qnli",
        columns={"text_a": "question", "text_b": "sentence", "label": "label"},
        hub_columns={"text_a": "question", "text_b": "sentence", "label": "label"},
        label_values=_ENTAILMENT, kind="classification", metrics=("accuracy",), headline="accuracy",
        train_size=104_743,
    )
)
register_task(
    _glue(
        "rte", "RTE", hub_config="rte",
        columns={"text_a": "sentence1", "text_b": "sentence2", "label": "label"}, hub_columns=_PAIR_HUB,
        label_values=_ENTAILMENT, kind="classification", metrics=("accuracy",), headline="accuracy",
        train_size=2_490,
    )
)
register_task(
    _glue(
        "wnli", "WNLI", hub_config="wnli",
        columns={"text_a": "sentence1", "text_b": "sentence2", "label": "label"}, hub_columns=_PAIR_HUB,
        label_values=_BINARY, kind="classification", metrics=("accuracy",), headline="accuracy",
        train_size=635,
    )
)


_VARIANT = re.compile(r"^(?P<task>.+)@(?P<count>[0-9]+)$")
_VARIANTS: dict[str, TaskSpec] = {}
"""Variants built so far, kept apart from :data:`TASKS` so that the table (and the names an unknown-task error
lists) stays the built-in tasks whatever variants a process happened to use."""


@register_task_finder
def find_variant(name: str) -> TaskSpec | None:
    """``<task>@<count>``: the built-in task trained on a fixed subset of ``count`` examples (see
    :attr:`TaskSpec.train_subset`); None for other names."""
    match = _VARIANT.match(name.strip())
    if match is None:
        return None
    base, count = get_task(match["task"]), int(match["count"])
    if base.benchmark not in ("glue", "superglue") or base.train_subset is not None or not base.has_train:
        raise ValueError(f"task {name!r}: <task>@<count> names a subset of a built-in task's training split; for "
                         "a task file, a variant or a task without a training split, set data.train_subset instead")
    if not 0 < count < base.train_size:
        raise ValueError(f"task {name!r}: {base.name} has {base.train_size} training examples: use a count from 1 "
                         f"to {base.train_size - 1}, or {base.name} itself for all of them")
    key = f"{base.name}@{count}"
    if key not in _VARIANTS:
        _VARIANTS[key] = replace(base, name=key, train_subset=count)
    return _VARIANTS[key]


def get_task(name: str) -> TaskSpec:
    """Look a task up by name (case-insensitive), or load a task file (``*.yaml``, see docs/task_files.md); an
    unknown name is a one-line error listing the known ones."""
    key = name.strip().lower()
    if key not in TASKS:
        for finder in TASK_FINDERS:
            found = finder(name)
            if found is not None:
                return found
        known = ", ".join(sorted({spec.name for spec in TASKS.values()}))
        raise ValueError(f"unknown task {name!r}: choose one of {known}, or give the path of a task file (a .yaml "
                         "file, docs/task_files.md)")
    return TASKS[key]


# ---------------------------------------------------------------------------------------------------- SuperGLUE
# Official jsonl layout: <root>/superglue/<Folder>/{train,val,test}.jsonl (test unlabeled); hub aps/super_glue.
# Label values are written as the leaderboard expects them in submission files (BoolQ/WiC lower-case booleans,
# WSC capitalised ones). The diagnostics AX-b / AX-g have only a labelled test file and are evaluation-only.
_SG_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}
SUPERGLUE_ALIASES = {"rte": "superglue-rte"}
"""Names that mean another task inside ``SuperGlueDataModule`` (``rte`` is GLUE's RTE in the table)."""


def _superglue(name: str, folder: str, **kwargs) -> TaskSpec:
    files = kwargs.pop("files", _SG_FILES)
    return TaskSpec(
        name=name, benchmark="superglue", folder=folder, files=files, hub_path="aps/super_glue",
        columns={}, **kwargs,
    )


_SG_BOOL = ("false", "true")
register_task(
    _superglue(
        "boolq", "BoolQ", hub_config="boolq", label_values=_SG_BOOL, kind="classification",
        formulation="boolq", metrics=("accuracy",), headline="accuracy", train_size=9_427,
    )
)
register_task(
    _superglue(
        "cb", "CB", hub_config="cb", label_values=("entailment", "contradiction", "neutral"),
        kind="classification", formulation="superglue_pair", metrics=("accuracy", "macro_f1", "avg_acc_f1"),
        headline="avg_acc_f1", train_size=250,
    )
)
register_task(
    _superglue(
        "copa", "COPA", hub_config="copa", label_values=("0", "1"), kind="multiple_choice",
        formulation="copa", metrics=("accuracy",), headline="accuracy", train_size=400,
    )
)
register_task(
    _superglue(
        "multirc", "MultiRC", hub_config="multirc", label_values=("0", "1"), kind="classification",
        formulation="multirc", metrics=("f1a", "em", "avg_f1a_em"), headline="avg_f1a_em",
        train_size=27_243,  # answer options (456 passages)
    )
)
register_task(
    _superglue(
        "record", "ReCoRD", hub_config="record", label_values=("0", "1"), kind="classification",
        formulation="record", metrics=("record_f1", "record_em", "avg_f1_em"), headline="avg_f1_em",
        train_size=100_730,  # queries; each becomes one binary example per candidate entity
    )
)
register_task(
    _superglue(
        "superglue-rte", "RTE", hub_config="rte", label_values=_ENTAILMENT, kind="classification",
        formulation="superglue_pair", metrics=("accuracy",), headline="accuracy", train_size=2_490,
    ),
    "rte-superglue",
)
register_task(
    _superglue(
        "wic", "WiC", hub_config="wic", label_values=_SG_BOOL, kind="classification", formulation="wic",
        metrics=("accuracy",), headline="accuracy", train_size=5_428,
    )
)
register_task(
    _superglue(
        "wsc", "WSC", hub_config="wsc.fixed", label_values=("False", "True"), kind="classification",
        formulation="wsc", metrics=("accuracy",), headline="accuracy", train_size=554,
    )
)
register_task(
    _superglue(
        "axb", "AX-b", hub_config="axb", files={"test": "AX-b.jsonl"}, label_values=_ENTAILMENT,
        kind="classification", formulation="superglue_pair", metrics=("mcc", "accuracy"), headline="mcc",
        train_size=0, eval_splits={"test": ""}, has_train=False,
    ),
    "ax-b",
)
register_task(
    _superglue(
        "axg", "AX-g", hub_config="axg", files={"test": "AX-g.jsonl"}, label_values=_ENTAILMENT,
        kind="classification", formulation="superglue_pair", metrics=("accuracy", "gender_parity"),
        # Parity alone is 1.0 for a constant predictor, so accuracy ranks runs.
        headline="accuracy", train_size=0, eval_splits={"test": ""}, has_train=False,
    ),
    "ax-g",
)
