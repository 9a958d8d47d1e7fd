"""Task sources: where a task's examples are read from, the first step of the data pipeline.

A source knows which splits a task has and turns one split's rows into examples; it knows nothing of protocols,
seeds or tokenizers. :func:`task_source` picks the source of a task:

* :class:`TaskSource`: a built-in task, from a local data root in the official layout
  (``<root>/glue/RTE/train.tsv``, ``<root>/superglue/CB/train.jsonl``) or, without a root, from the hub;
* :class:`TaskFileSource`: a task file (docs/task_files.md), which names its own data files;
* :class:`ExamplesSource`: examples already in memory (tests, notebooks).

The protocols (:mod:`pet_lightning.data.protocol`) read any :class:`ExampleSource`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pet_lightning.data.formulations import FORMULATIONS, Example, formulate
from pet_lightning.data.readers import DataError, read_hub, read_jsonl, read_tsv, task_file
from pet_lightning.data.task_files import FileTaskSpec, TaskFileError, file_rows
from pet_lightning.tasks import TaskSpec


class ExampleSource(Protocol):
    """What the protocols read: the task, its splits and their examples, and where they come from."""

    spec: TaskSpec

    @property
    def location(self) -> str:
        """Where the splits are read from, as error messages name it (a data root, ``the hub``, a task file)."""
        ...

    def available_splits(self) -> list[str]:
        """Splits of the task that this source has."""
        ...

    def load_examples(self, split: str) -> list[Example]:
        """One split's examples, in file order."""
        ...


@dataclass(frozen=True)
class TaskSource:
    """A built-in task from ``data_dir`` in the official layout, or from the hub when ``data_dir`` is None."""

    spec: TaskSpec
    data_dir: str | None = None

    @property
    def location(self) -> str:
        return self.data_dir or "the hub"

    def available_splits(self) -> list[str]:
        if self.data_dir is None:
            return list(self.spec.files)
        folder = Path(self.data_dir) / self.spec.benchmark / self.spec.folder
        return [split for split, name in self.spec.files.items() if (folder / name).is_file()]

    def load_examples(self, split: str) -> list[Example]:
        """Read one official split and formulate its rows as examples."""
        spec = self.spec
        if self.data_dir is None:
            rows = read_hub(spec, split)
            if spec.hub_columns:
                rows = [{ours: row.get(theirs) for ours, theirs in spec.hub_columns.items()} for row in rows]
            where = f"{spec.hub_path}/{spec.hub_config}:{split}"
        else:
            path = task_file(self.data_dir, spec, split)
            if path.suffix == ".jsonl":
                rows = read_jsonl(path)
            else:
                rows = read_tsv(path, spec.columns, spec.headerless if not split.startswith("test") else None)
            where = str(path)
        if not rows:
            raise DataError(f"{where} has no rows: replace it with the official file")
        return formulate(spec, rows, where)


@dataclass(frozen=True)
class TaskFileSource:
    """A task file's own data files (or hub dataset), formulated as the GLUE ``pair`` formulation does."""

    spec: FileTaskSpec

    @property
    def location(self) -> str:
        return self.spec.task_file

    def available_splits(self) -> list[str]:
        """Splits with rows; without a validation file, the train file is offered as the only labelled set."""
        if self.spec.carved_from_train:
            return ["validation", *(s for s in self.spec.files if s == "test")]
        return list(self.spec.files)

    def load_examples(self, split: str) -> list[Example]:
        """The split's rows as examples of the ``pair`` formulation, each carrying its group keys (``meta``)."""
        spec = self.spec
        if split not in spec.files:
            raise TaskFileError(f"task {spec.name} ({spec.task_file}) has no {split!r} split: it has "
                                f"{', '.join(spec.files)}")
        rows, where = file_rows(spec, split)
        examples = FORMULATIONS["pair"](spec, rows, where)
        for example, row in zip(examples, rows):
            example["meta"] = {"idx": example["idx"], "group_keys": row["group_keys"]}
        return examples


@dataclass(frozen=True)
class ExamplesSource:
    """Examples already in memory, by split name (``train``, ``validation``, ``test``...)."""

    spec: TaskSpec
    splits: dict[str, list[Example]] = field(default_factory=dict)

    @property
    def location(self) -> str:
        return "the given examples"

    def available_splits(self) -> list[str]:
        return list(self.splits)

    def load_examples(self, split: str) -> list[Example]:
        if split not in self.splits:
            raise DataError(f"task {self.spec.name}: no {split!r} examples were given (given: "
                            f"{', '.join(self.splits) or 'none'})")
        return list(self.splits[split])


def task_source(spec: TaskSpec, data_dir: str | None = None) -> ExampleSource:
    """The source of ``spec``'s examples: its task file's data, else the official files under ``data_dir``
    (the hub when None)."""
    if isinstance(spec, FileTaskSpec):
        return TaskFileSource(spec)
    return TaskSource(spec, data_dir)


__all__ = ["ExampleSource", "ExamplesSource", "TaskFileSource", "TaskSource", "task_source"]
