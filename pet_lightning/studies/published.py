"""The seed papers' tables as data: ``published/<table>.csv``, transcribed from the seed document, with the
citation, model and metric in their ``#`` lines (see ``published/README.md``).

Each file keeps the paper's own row names, its significance arrows and footnotes (``mark``) and its sub-settings;
a study maps its own method, task and setting names onto them in one place (:class:`PaperNames`), and reads the
figures through :class:`StudyTable`, which also says which metric each task's comparison column uses.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pet_lightning.errors import PetLightningError

PUBLISHED_DIR = Path(__file__).with_name("published")
COLUMNS = ("row", "task", "value", "std", "setting")
OPTIONAL_COLUMNS = ("mark",)


class PublishedError(PetLightningError):
    """A published-table file that cannot be read; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Figure:
    """One published cell: its value (NaN where the paper prints only a mark), std (NaN where none) and mark."""

    value: float
    std: float = math.nan
    mark: str = ""


@dataclass
class PublishedTable:
    """One paper table: ``figures[(row, task, setting)]`` in the paper's own names, and the file's citation."""

    name: str
    source: list[str]
    figures: dict[tuple[str, str, str], Figure]

    @property
    def values(self) -> dict[tuple[str, str, str], tuple[float, float]]:
        return {key: (figure.value, figure.std) for key, figure in self.figures.items()}

    def figure(self, row: str, task: str, setting: str = "") -> Figure | None:
        return self.figures.get((row, task, setting))

    def get(self, row: str, task: str, setting: str = "") -> float | None:
        """The printed value; None where the paper has no figure (or only a mark) for the cell."""
        found = self.figure(row, task, setting)
        return None if found is None or math.isnan(found.value) else found.value

    def std(self, row: str, task: str, setting: str = "") -> float | None:
        found = self.figure(row, task, setting)
        return None if found is None or math.isnan(found.std) else found.std

    def mark(self, row: str, task: str, setting: str = "") -> str | None:
        found = self.figure(row, task, setting)
        return None if found is None else found.mark

    @property
    def rows(self) -> list[str]:
        return list(dict.fromkeys(row for row, _task, _setting in self.figures))

    @property
    def citation(self) -> str:
        return " ".join(self.source[:2]) if self.source else self.name


def load_published(name: str, folder: Path = PUBLISHED_DIR) -> PublishedTable | None:
    """The table ``name`` (e.g. ``transferability_table1``), or None when no file of that name is stored."""
    path = folder / f"{name}.csv"
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    source = [line[1:].strip() for line in lines if line.startswith("#")]
    body = [(number, line) for number, line in enumerate(lines, start=1) if line.strip() and not line.startswith("#")]
    if not body:
        raise PublishedError(f"{path}: no header line: start the data with {','.join(COLUMNS + OPTIONAL_COLUMNS)}")
    reader = csv.DictReader(line for _number, line in body)
    fields = tuple(reader.fieldnames or ())
    if fields[:len(COLUMNS)] != COLUMNS or any(extra not in OPTIONAL_COLUMNS for extra in fields[len(COLUMNS):]):
        raise PublishedError(f"{path}: header {list(fields)} is not {','.join(COLUMNS)}[,mark]: fix the header line")
    figures: dict[tuple[str, str, str], Figure] = {}
    for (number, _line), row in zip(body[1:], reader):
        key = (row["row"], row["task"], row["setting"] or "")
        mark = (row.get("mark") or "").strip()
        try:
            value = float(row["value"]) if row["value"] else math.nan
            std = float(row["std"]) if row["std"] else math.nan
        except ValueError:
            raise PublishedError(f"{path}: line {number}: value {row['value']!r} / std {row['std']!r} is not a "
                                 "number: write figures as printed, e.g. 88.4") from None
        if math.isnan(value) and not mark:
            raise PublishedError(f"{path}: line {number}: {key} has neither a value nor a mark: write the figure, "
                                 "or the paper's mark for a cell it prints no number for")
        if key in figures:
            raise PublishedError(f"{path}: line {number} repeats {key}: keep one figure per cell")
        figures[key] = Figure(value, std, mark)
    return PublishedTable(name, source, figures)


@dataclass(frozen=True)
class PaperNames:
    """How one study's names map onto its paper's table, and which metric each comparison uses.

    Args:
        rows: our method name -> the paper's row name (a method missing here has no published row).
        tasks: our task name -> the paper's task column, where they differ (``mnli`` -> ``mnli-m``).
        settings: our setting -> the paper's (``1-2/headline`` -> ``1-2/accuracy``).
        metrics: our task -> the key of ``record["report"]`` that is the paper's metric for that task, where it is
            not the task's headline (the transferability study reports STS-B Spearman, Revisiting CB F1).
        metric_note: one sentence for the report header on the metrics this table uses.
    """

    rows: Mapping[str, str]
    tasks: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, str] = field(default_factory=dict)
    metric_note: str = ""

    def __post_init__(self) -> None:
        inverse: dict[str, str] = {}
        for ours, theirs in self.rows.items():
            if theirs in inverse:
                raise ValueError(f"paper row {theirs!r} is mapped from both {inverse[theirs]!r} and {ours!r}: "
                                 "map each paper row from one method")
            inverse[theirs] = ours


@dataclass
class StudyTable:
    """A published table read in a study's own names (see :class:`PaperNames`)."""

    table: PublishedTable
    names: PaperNames

    def _key(self, method: str, task: str, setting: str) -> tuple[str, str, str] | None:
        row = self.names.rows.get(method)
        if row is None:
            return None
        return row, self.names.tasks.get(task, task), self.names.settings.get(setting, setting)

    def figure(self, method: str, task: str, setting: str = "") -> Figure | None:
        key = self._key(method, task, setting)
        return None if key is None else self.table.figure(*key)

    def get(self, method: str, task: str, setting: str = "") -> float | None:
        key = self._key(method, task, setting)
        return None if key is None else self.table.get(*key)

    def std(self, method: str, task: str, setting: str = "") -> float | None:
        key = self._key(method, task, setting)
        return None if key is None else self.table.std(*key)

    def mark(self, method: str, task: str, setting: str = "") -> str | None:
        key = self._key(method, task, setting)
        return None if key is None else self.table.mark(*key)

    @property
    def citation(self) -> str:
        return self.table.citation


def load_study_table(name: str, names: PaperNames, folder: Path = PUBLISHED_DIR) -> StudyTable | None:
    table = load_published(name, folder)
    return None if table is None else StudyTable(table, names)
