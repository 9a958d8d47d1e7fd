"""Cells of a report: the runs of one (task, method, seed mode), each of one configuration and protocol."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pet_lightning.sweeps.records import SweepError
from pet_lightning.tasks import get_task, resource_group_for

GROUPS = ("low", "medium", "high")
GROUP_LABELS = {"low": "low (<1k)", "medium": "medium (<10k)", "high": "high (>=10k)"}
SEED_MODE_LABELS = {"both": "global", "init": "weight init", "order": "data order"}
LEAKY_MARK = "†"


@dataclass
class Cell:
    """The runs of one (task, method, seed mode)."""

    scores: dict[int, float] = field(default_factory=dict)  # seed -> score x 100
    steps: list[int] = field(default_factory=list)
    best_steps: list[int] = field(default_factory=list)
    leaky: bool = False
    # Seeds whose headline is undefined (a correlation of constant predictions: Pearson / Spearman NaN), scored 0.
    collapsed: list[int] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [self.scores[seed] for seed in sorted(self.scores)]


@dataclass
class Report:
    """Everything the tables and plots are made of.

    ``groups``: each task's resource group by the examples its runs trained on (a run on a 500-example subset of
    a 5k task is low-resource), which can differ from the official one (``official_groups``).
    """

    tasks: list[str]
    methods: list[str]
    baseline: str
    alpha: float
    cells: dict[tuple[str, str, str], Cell]
    headline: dict[str, str]
    leaky_runs: int
    groups: dict[str, str] = field(default_factory=dict)
    official_groups: dict[str, str] = field(default_factory=dict)
    failed_runs: list[str] = field(default_factory=list)

    def cell(self, task: str, method: str, mode: str = "both") -> Cell | None:
        return self.cells.get((task, method, mode))

    def group_of(self, task: str) -> str:
        return self.groups[task]

    def cells_by_mode(self, modes: Sequence[str]) -> Iterator[tuple[str, str, dict[str, Cell | None]]]:
        """(task, method, {mode: cell}) for every task x method with a cell in at least one of ``modes``, in the
        report's order: the rows of the seed-source tables."""
        for task in self.tasks:
            for method in self.methods:
                cells = {mode: self.cell(task, method, mode) for mode in modes}
                if any(cell is not None for cell in cells.values()):
                    yield task, method, cells


def _identity(record: dict[str, Any]) -> tuple[str, str, bool]:
    """(config hash, protocol, leaky) of a record: what a cell must not mix."""
    if "run_hash" not in record or "config_hash" not in record:
        raise SweepError(
            f"record {record.get('run_id', '?')} has no seed-free config hash (written by an older pet-lightning): "
            "rerun its sweep to report it"
        )
    return str(record["config_hash"]), str(record.get("protocol", "?")), bool(record.get("leaky"))


def _label(method: str, identity: tuple[str, str, bool]) -> str:
    config, protocol, leaky = identity
    return f"{method} [{protocol}{' leaky' if leaky else ''} {config}]"


def _separate_configs(records: list[dict[str, Any]], split_configs: bool) -> list[dict[str, Any]]:
    """Records whose (task, method, seed mode) holds one configuration; with ``split_configs`` the method of each
    extra configuration is relabelled ``method [protocol hash]``, else mixing is an error naming both configs."""
    seen: dict[tuple[str, str, str], list[tuple[str, str, bool]]] = defaultdict(list)
    for record in records:
        key = (record["task"], record["method"], record.get("seed_mode", "both"))
        identity = _identity(record)
        if identity not in seen[key]:
            seen[key].append(identity)
    mixed = {key: ids for key, ids in seen.items() if len(ids) > 1}
    if not mixed:
        return records
    if not split_configs:
        (task, method, mode), ids = next(iter(mixed.items()))
        a, b = ids[0], ids[1]
        raise SweepError(
            f"{task} / {method} ({mode} seeds) mixes two configurations: config {a[0]} (protocol {a[1]}"
            f"{', leaky' if a[2] else ''}) and config {b[0]} (protocol {b[1]}{', leaky' if b[2] else ''}): give "
            "each edited sweep its own `out` folder, or pass --split-configs to report them as separate rows"
        )
    relabelled = []
    for record in records:
        key = (record["task"], record["method"], record.get("seed_mode", "both"))
        if key in mixed:
            record = {**record, "method": _label(record["method"], _identity(record))}
        relabelled.append(record)
    return relabelled


def _trained_group(record: dict[str, Any]) -> str:
    if "train_examples" not in record:
        raise SweepError(
            f"record {record.get('run_id', '?')} lacks train_examples: its resource group is unknown; rerun its sweep"
        )
    return resource_group_for(int(record["train_examples"]))


def _reported(record: dict[str, Any], metric: str) -> float:
    """The record's ``metric`` on the reported split."""
    report = record.get("report") or {}
    if metric not in report:
        raise SweepError(f"record {record.get('run_id', '?')} has no {metric!r} on its reported split (it has "
                         f"{', '.join(sorted(report)) or 'none'}): rerun its sweep, or compare on a metric it has")
    return float(report[metric])


def build_report(
    records: list[dict[str, Any]], baseline: str = "full", alpha: float = 0.05, split_configs: bool = False,
    metrics: Mapping[str, str] | None = None,
) -> Report:
    """Cells of (task, method, seed mode); each holds one configuration and one protocol (see
    :func:`_separate_configs`), one score per seed. Failed runs are left out and listed.

    ``metrics`` names, per task, the metric of ``record["report"]`` to score instead of the task's headline (a
    paper's table may report another metric than the one that selected the model: STS-B Spearman, CB F1); the
    report's ``headline`` then names that metric for the task."""
    failed = [str(r.get("run_id", "?")) for r in records if r.get("status", "ok") != "ok"]
    records = [r for r in records if r.get("status", "ok") == "ok"]
    if not records:
        raise SweepError("the results file has no finished runs yet: run the sweep first")
    records = _separate_configs(records, split_configs)
    tasks: list[str] = []
    methods: list[str] = []
    cells: dict[tuple[str, str, str], Cell] = defaultdict(Cell)
    headline: dict[str, str] = {}
    groups: dict[str, set[str]] = defaultdict(set)
    leaky_runs = 0
    for record in records:
        task, method, mode = record["task"], record["method"], record.get("seed_mode", "both")
        if task not in tasks:
            tasks.append(task)
        if method not in methods:
            methods.append(method)
        metric = (metrics or {}).get(task)
        headline[task] = metric or record["headline"]
        groups[task].add(_trained_group(record))
        cell = cells[(task, method, mode)]
        seed = int(record["seed"])
        if seed in cell.scores:
            raise SweepError(
                f"{task} / {method} ({mode} seeds) has seed {seed} twice (run {record.get('run_id', '?')}): keep one "
                "record per run in the results file"
            )
        score = float(record["score"]) if metric is None else _reported(record, metric)
        if math.isnan(score):
            # Constant predictions have no correlation with the labels: scored 0 (as torchmetrics scores MCC), and
            # listed, so a collapsed seed neither vanishes from the mean nor hides behind it.
            cell.collapsed.append(seed)
            score = 0.0
        cell.scores[seed] = 100.0 * score
        cell.steps.append(int(record["steps"]))
        if record.get("best_step") is not None:
            cell.best_steps.append(int(record["best_step"]))
        if record.get("leaky"):
            cell.leaky = True
            leaky_runs += 1
    for task, found in groups.items():
        if len(found) > 1:
            raise SweepError(
                f"runs of {task} trained on data of different resource groups ({', '.join(sorted(found))}): report "
                "sweeps with different train_subset settings separately"
            )
    trained = {task: found.pop() for task, found in groups.items()}
    # Baseline first, then the order of first appearance; tasks by resource group, then name.
    if baseline in methods:
        methods.remove(baseline)
        methods.insert(0, baseline)
    tasks.sort(key=lambda t: (GROUPS.index(trained[t]), t))
    # The records' own group first: a task file's task is known by name only in the process that read the file.
    recorded = {r["task"]: r["official_resource_group"] for r in records if r.get("official_resource_group")}
    official = {task: recorded.get(task) or get_task(task).resource_group for task in tasks}
    return Report(tasks, methods, baseline, alpha, dict(cells), headline, leaky_runs, trained, official, failed)
