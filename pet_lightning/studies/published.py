"""The seed papers' tables as data: ``published/<table>.csv`` (citation in its ``#`` lines; see its README)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

PUBLISHED_DIR = Path(__file__).with_name("published")
COLUMNS = ["row", "task", "value", "std", "setting"]


class PublishedError(ValueError):
    """A published-table file that cannot be read; the message names the file, the line and the fix."""


@dataclass
class PublishedTable:
    """One paper table: ``values[(row, task, setting)] = (value, std or NaN)`` and the file's citation lines."""

    name: str
    source: list[str]
    values: dict[tuple[str, str, str], tuple[float, float]]

    def get(self, row: str, task: str, setting: str = "") -> float | None:
        found = self.values.get((row, task, setting))
        return None if found is None else found[0]

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
    body = [line for line in lines if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(body)
    if reader.fieldnames != COLUMNS:
        raise PublishedError(f"{path}: header {reader.fieldnames} is not {','.join(COLUMNS)}: fix the header line")
    values: dict[tuple[str, str, str], tuple[float, float]] = {}
    for number, row in enumerate(reader, start=2):
        key = (row["row"], row["task"], row["setting"] or "")
        try:
            value = float(row["value"])
            std = float(row["std"]) if row["std"] else math.nan
        except ValueError:
            raise PublishedError(f"{path}: data line {number}: value {row['value']!r} / std {row['std']!r} is not a "
                                 "number: write figures as printed, e.g. 88.4") from None
        if key in values:
            raise PublishedError(f"{path}: data line {number} repeats {key}: keep one figure per cell")
        values[key] = (value, std)
    return PublishedTable(name, source, values)
