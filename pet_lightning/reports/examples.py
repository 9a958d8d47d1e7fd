"""The reported split example by example: how many examples a figure rests on, what one example is worth, and
intervals that resample examples as well as seeds.

Each sweep run keeps its selected model's predictions on the reported split (``predictions.csv``, written by
:class:`~pet_lightning.callbacks.report_predictions.ReportPredictions`; its path is the record's ``predictions``,
relative to the folder of ``results.jsonl``). From them:

* :func:`cell_resolution`: a cell's (task x method) reported examples ``n``, the points one example moves a score
  (100 / n) and a percentile bootstrap interval of the cell's mean score over seeds, resampling the examples
  jointly for all its seeds (every seed reports the same examples: the protocol's split seed is fixed);
* :func:`paired_comparison`: two methods example by example within each seed they share: the difference of their
  scores with an interval over examples (resampled jointly for both methods and all seeds) and, per seed, the
  examples only one of them gets right;
* :func:`resolution_section`: the ``## Resolution of the reported split`` section of a study report.

Grouped tasks resample their groups (MultiRC questions, ReCoRD queries), the unit their exact match counts.
Metrics are recomputed with numpy/scipy as :mod:`pet_lightning.metrics` defines them (fractions; tables print
x 100). Every bootstrap is seeded, so a report regenerates byte for byte.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pet_lightning.reports.example_metrics import METRIC_FUNCTIONS, Columns, check_recomputable, metric_subset
from pet_lightning.reports.tables import markdown_table
from pet_lightning.reports.verdicts import bootstrap_over_examples, example_resolution
from pet_lightning.sweeps.records import run_path

RESAMPLES = 1000
BOOTSTRAP_SEED = 0


# ----------------------------------------------------------------------------------------------------------------
# Reading


def read_predictions(path: str | Path) -> dict[str, Columns]:
    """A ``predictions.csv`` as numpy columns per subset (``""``, ``_mismatched``...), rows in file order."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_subset: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_subset[row["subset"]].append(row)
    subsets = {}
    for subset, kept in by_subset.items():
        columns = {}
        for name in kept[0]:
            if name == "subset":
                continue
            values = [row[name] for row in kept]
            columns[name] = np.array([float(value) for value in values])
            if name in ("idx", "group"):
                columns[name] = columns[name].astype(np.int64)
        subsets[subset] = columns
    return subsets


def load_predictions(record: Mapping[str, Any], results_dir: str | Path | None = None) -> dict[str, Columns] | None:
    """The run's predictions (see :func:`read_predictions`), or None when its record names none that exists
    (records written before issue 34). ``results_dir``: the folder of its results file (default: the folder the
    record was read from)."""
    path = run_path(record, "predictions", results_dir)
    return read_predictions(path) if path is not None and path.is_file() else None


# ----------------------------------------------------------------------------------------------------------------
# Resampling units shared by the seeds of a cell


@dataclass
class Aligned:
    """The seeds' predictions of one subset on the examples they all report, row-aligned by ``idx``."""

    metric: str
    seeds: list[int]
    columns: list[Columns]  # one per seed
    units: list[np.ndarray]  # rows of each resampling unit (an example, or a group's rows)

    @property
    def examples(self) -> int:
        return len(self.units)

    @property
    def single(self) -> bool:
        """Every unit is one row (ungrouped tasks): a draw of units is a draw of rows."""
        return "group" not in self.columns[0]

    def draw(self, units: np.ndarray) -> list[Columns]:
        """Each seed's columns on the drawn units (a unit drawn twice counts twice; groups renumbered per draw)."""
        rows = units if self.single else np.concatenate([self.units[unit] for unit in units])
        drawn = []
        for columns in self.columns:
            taken = {name: values[rows] for name, values in columns.items()}
            if "group" in columns:
                taken["group"] = np.repeat(np.arange(len(units)), [len(self.units[unit]) for unit in units])
            drawn.append(taken)
        return drawn

    def value(self, columns: list[Columns]) -> float:
        return float(np.mean([METRIC_FUNCTIONS[self.metric](c) for c in columns]))


def align(runs: Mapping[int, dict[str, Columns]], key: str) -> Aligned:
    """``runs`` (seed -> predictions) on the examples of ``key``'s subset that every seed reports."""
    seeds = sorted(runs)
    metric, subset = metric_subset(key, list(runs[seeds[0]]))
    check_recomputable(metric, key)
    common = None
    for seed in seeds:
        ids = runs[seed][subset]["idx"]
        common = ids if common is None else np.intersect1d(common, ids)
    columns = []
    for seed in seeds:
        kept = runs[seed][subset]
        position = {int(i): p for p, i in enumerate(kept["idx"])}
        rows = np.array([position[int(i)] for i in common], dtype=np.int64)
        columns.append({name: values[rows] for name, values in kept.items()})
    if "group" in columns[0]:
        groups = columns[0]["group"]
        units = [np.flatnonzero(groups == group) for group in np.unique(groups)]
    else:
        units = [np.array([row]) for row in range(len(common))]
    return Aligned(metric, seeds, columns, units)


# ----------------------------------------------------------------------------------------------------------------
# Cells and pairs


@dataclass(frozen=True)
class CellResolution:
    """One cell's resolution: ``examples`` reported (groups for grouped tasks), the points one of them is worth,
    the mean over seeds x 100 and its bootstrap interval over examples (x 100)."""

    task: str
    method: str
    metric: str
    seeds: int
    examples: int
    points_per_example: float
    mean: float
    low: float
    high: float


def _runs(records: Sequence[Mapping[str, Any]], results_dir: str | Path | None) -> dict[int, dict[str, Columns]]:
    found = {}
    for record in records:
        predictions = load_predictions(record, results_dir)
        if predictions is not None:
            found[int(record["seed"])] = predictions
    return found


def cell_resolution(records: Sequence[Mapping[str, Any]], key: str, results_dir: str | Path | None = None,
                    resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> CellResolution | None:
    """The resolution of one cell (the records of one task and method, one per seed) on the metric ``key``; None
    when no record of it has predictions."""
    runs = _runs(records, results_dir)
    if not runs:
        return None
    aligned = align(runs, key)
    low, high = bootstrap_over_examples(lambda units: aligned.value(aligned.draw(units)),
                                        np.arange(aligned.examples), resamples=resamples, seed=seed)
    return CellResolution(str(records[0]["task"]), str(records[0]["method"]), key, len(aligned.seeds),
                          aligned.examples, example_resolution(aligned.examples), 100 * aligned.value(aligned.columns),
                          100 * low, 100 * high)


@dataclass(frozen=True)
class PairedComparison:
    """Method A - method B on the seeds both ran, example by example (x 100): the mean over seeds of the
    per-seed difference, its bootstrap interval over examples, and per seed how many examples only A (only B)
    predicts exactly right (classification; regression counts the example closer to the gold score)."""

    metric: str
    seeds: list[int]
    examples: int
    difference: float
    low: float
    high: float
    only_a: dict[int, int]
    only_b: dict[int, int]


def paired_comparison(records_a: Sequence[Mapping[str, Any]], records_b: Sequence[Mapping[str, Any]], key: str,
                      results_dir: str | Path | None = None, resamples: int = RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> PairedComparison | None:
    """Pair two methods' runs of one task within seeds (None when they share no seed with predictions)."""
    runs_a, runs_b = _runs(records_a, results_dir), _runs(records_b, results_dir)
    shared = sorted(set(runs_a) & set(runs_b))
    if not shared:
        return None
    # One alignment over both methods' runs, so that both are scored on the same drawn examples.
    both = {2 * position + side: runs[s] for position, s in enumerate(shared)
            for side, runs in enumerate((runs_a, runs_b))}
    aligned = align(both, key)
    metric = METRIC_FUNCTIONS[aligned.metric]

    def difference(columns: list[Columns]) -> float:
        return float(np.mean([metric(columns[i]) - metric(columns[i + 1]) for i in range(0, len(columns), 2)]))

    low, high = bootstrap_over_examples(lambda units: difference(aligned.draw(units)), np.arange(aligned.examples),
                                        resamples=resamples, seed=seed)
    only_a, only_b = {}, {}
    for position, s in enumerate(shared):
        a, b = aligned.columns[2 * position], aligned.columns[2 * position + 1]
        right_a, right_b = _right(a), _right(b)
        if right_a is None:
            right_a = np.abs(a["prediction"] - a["label"]) < np.abs(b["prediction"] - b["label"])
            right_b = np.abs(b["prediction"] - b["label"]) < np.abs(a["prediction"] - a["label"])
        only_a[s], only_b[s] = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    return PairedComparison(key, shared, aligned.examples, 100 * difference(aligned.columns), 100 * low, 100 * high,
                            only_a, only_b)


def _right(columns: Columns) -> np.ndarray | None:
    """Whether each row is predicted exactly (None for regression scores, which are never exact)."""
    if np.any(columns["prediction"] != np.round(columns["prediction"])):
        return None
    return columns["prediction"] == columns["label"]


# ----------------------------------------------------------------------------------------------------------------
# The report section

SECTION_TITLE = "## Resolution of the reported split"


def _keys(task: str, records: Sequence[Mapping[str, Any]], metrics: Mapping[str, str | Sequence[str]] | None):
    wanted = (metrics or {}).get(task) or str(records[0].get("headline") or "headline")
    return [wanted] if isinstance(wanted, str) else list(wanted)


def resolution_section(report_records: Sequence[Mapping[str, Any]], results_dir: str | Path | None = None,
                       metrics: Mapping[str, str | Sequence[str]] | None = None, resamples: int = RESAMPLES) -> str:
    """``## Resolution of the reported split``: per task and metric, the reported examples, the points one example
    is worth and, per method, the mean over seeds with a 95% bootstrap interval over examples.

    Args:
        report_records: The report's ``ok`` records.
        results_dir: Folder of their results file (default: the folder each record was read from).
        metrics: Task -> the ``report`` key (or keys) its table compares (default: the task's headline).
    """
    cells: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for record in report_records:
        cells[(str(record["task"]), str(record["method"]))].append(record)
    tasks = sorted({task for task, _ in cells})
    methods = sorted({method for _, method in cells})
    with_predictions = {key for key, records in cells.items() if _runs(records, results_dir)}
    head = (f"{SECTION_TITLE}\n\nWhat one reported example is worth, and how far the cells move when the reported "
            f"examples are resampled ({resamples} bootstrap draws, seeded; the same draw for every seed of a cell; "
            "grouped tasks draw their questions / queries): mean over seeds x 100 [95% interval over examples].\n\n")
    if not with_predictions:
        rows = []
        for task in tasks:
            records = [r for (t, _), rs in sorted(cells.items()) if t == task for r in rs]
            n = max(int(r.get("report_examples") or 0) for r in records)
            rows.append([task, ", ".join(_keys(task, records, metrics)), str(n) if n else "–",
                         f"{example_resolution(n):.2f}" if n else "–"])
        note = ("Per-example predictions were not recorded for these runs (records from before issue 34): no "
                "interval over examples; examples from the records.\n\n")
        return head + note + markdown_table(["task", "metric", "reported examples", "points per example"], rows)
    rows = []
    for task in tasks:
        task_records = [r for (t, _), rs in sorted(cells.items()) if t == task for r in rs]
        for key in _keys(task, task_records, metrics):
            try:
                resolved = {m: cell_resolution(cells[(task, m)], key, results_dir, resamples)
                            for m in methods if (task, m) in with_predictions}
            except ValueError:  # a metric without a recomputation here (AX-g parity): say so, do not fail
                rows.append([task, key, "–", "–", *(["not recomputable"] * len(methods))])
                continue
            found = [r for r in resolved.values() if r is not None]
            n = found[0].examples if found else 0
            row = [task, key, str(n) if n else "–", f"{example_resolution(n):.2f}" if n else "–"]
            for method in methods:
                cell = resolved.get(method)
                if (task, method) not in cells:
                    row.append("–")
                elif cell is None:
                    row.append("no predictions")
                else:
                    row.append(f"{cell.mean:.1f} [{cell.low:.1f}, {cell.high:.1f}]")
            rows.append(row)
    missing = sorted(f"{m} on {t}" for (t, m) in cells if (t, m) not in with_predictions)
    note = f"\nNo per-example predictions recorded for {', '.join(missing)}.\n" if missing else ""
    header = ["task", "metric", "reported examples", "points per example", *methods]
    return head + markdown_table(header, rows) + note
