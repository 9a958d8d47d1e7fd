"""The leak audit: what text each boundary of a split plan lets through.

``python cli.py audit --task multirc --protocol dev_split`` (or ``--task all --protocol all``) prints, for every
boundary of the plan (train -> selection, train -> report, selection -> report, train subset -> the rest of
train), both sides' sizes and how many examples of the second side share a normalised passage, sentence or task
key with the first (:mod:`pet_lightning.data.grouping`). A boundary between two parts drawn from one official file
was drawn by us and must show 0; one between two official files (train vs dev) was drawn by the benchmark, is
marked ``official`` and is shown as it is, so users know what the benchmark itself shares.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from pet_lightning.data.base import TaskDataModule
from pet_lightning.data.formulations import Example
from pet_lightning.data.grouping import shared_count
from pet_lightning.data.protocol import PROTOCOLS, STUDY_SPLITS, SplitPlan
from pet_lightning.data.readers import DataError, default_data_dir, task_file
from pet_lightning.data.task_files import is_task_file, load_task_file
from pet_lightning.tasks import TASKS


@dataclass(frozen=True)
class Boundary:
    """One boundary of a plan: ``shared`` examples of ``right`` share text with ``left``."""

    task: str
    protocol: str
    left: str
    right: str
    drawn_by: str  # "pet-lightning" (both sides from one official file) or "official" (two files)
    left_size: int
    right_size: int
    shared: int
    same_examples: bool = False  # selection and report are one set (the leaky standard protocol)

    @property
    def carved(self) -> bool:
        return self.drawn_by != "official"


def _parts(plan: SplitPlan, headline: str) -> list[tuple[str, str, list[Example]]]:
    """(name, official file it came from, examples) for every part of the plan."""

    def origin(role: str, split: str) -> str:
        return plan.origins[role] if split == headline else split

    parts = [("train", plan.origins["train"], plan.train)]
    parts += [(f"selection:{s}", origin("selection", s), rows) for s, rows in plan.selection.items()]
    parts += [(f"report:{s}", origin("report", s), rows) for s, rows in plan.report.items()]
    return parts


def audit_plan(plan: SplitPlan, task: str, protocol: str, headline: str) -> list[Boundary]:
    """Every boundary of ``plan``: train -> selection, train -> report, selection -> report, subset -> rest."""
    if not plan.origins:
        raise DataError(f"task {task}: the split plan names no origins of its parts: build it with make_plan")
    parts = _parts(plan, headline)
    pairs = [(a, b) for i, a in enumerate(parts) for b in parts[i + 1 :] if a[0].split(":")[0] != b[0].split(":")[0]]
    if plan.unused_train:
        parts.append(("unused train", plan.origins["train"], plan.unused_train))
        pairs.append((parts[0], parts[-1]))
    boundaries = []
    for (left, left_origin, left_rows), (right, right_origin, right_rows) in pairs:
        same_file = left_origin == right_origin
        same = left_rows is right_rows
        boundaries.append(
            Boundary(
                task=task,
                protocol=protocol,
                left=left,
                right=right,
                drawn_by="pet-lightning" if same_file and not same else "official",
                left_size=len(left_rows),
                right_size=len(right_rows),
                shared=shared_count(left_rows, right_rows, task, same_file),
                same_examples=same,
            )
        )
    return boundaries


def audit_task(task: str, protocol: str, data_dir: str | None = None, **data_args) -> list[Boundary]:
    """Build the task's split plan exactly as a run would, then audit it."""
    dm = TaskDataModule(task=task, data_dir=data_dir, protocol=protocol, **data_args)
    return audit_plan(dm.plan_splits(), dm.task, protocol, dm.spec.validation_split)


def local_tasks(data_dir: str) -> list[str]:
    """Tasks whose labelled files are in the data root (diagnostics, which have nothing to split, left out)."""
    found = []
    for spec in {id(s): s for s in TASKS.values()}.values():
        if "train" not in spec.files and spec.validation_split not in spec.files:
            continue
        try:
            task_file(data_dir, spec, spec.validation_split)
        except DataError:
            continue
        found.append(spec.name)
    return sorted(set(found))


def markdown(boundaries: list[Boundary]) -> str:
    lines = [
        "| task | protocol | boundary | drawn by | sizes | shared |",
        "|---|---|---|---|---:|---:|",
    ]
    for b in boundaries:
        shared = "same examples (leaky)" if b.same_examples else f"{b.shared:,} of {b.right_size:,}"
        lines.append(
            f"| {b.task} | {b.protocol} | {b.left} -> {b.right} | {b.drawn_by} | "
            f"{b.left_size:,} / {b.right_size:,} | {shared} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cli.py audit", description="Shared text across every boundary of a task's split plan."
    )
    parser.add_argument("--task", action="append",
                        help="task name or task file (.yaml), repeatable, or 'all' (default: all)")
    parser.add_argument(
        "--protocol", action="append", choices=[*PROTOCOLS, "all"],
        help="repeatable, or 'all' (default: all but train_holdout_tail, the Revisiting code's own split)"
    )
    parser.add_argument("--data-dir", default=None, help="data root (default: $PET_DATA_DIR)")
    parser.add_argument("--train-subset", type=int, default=None, help="also audit a training subset of this size")
    parser.add_argument("--split-seed", type=int, default=42)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    try:
        tasks = args.task or ["all"]
        if data_dir is None and not all(is_task_file(task) for task in tasks):  # a task file names its own files
            raise DataError("no data root: set PET_DATA_DIR or pass --data-dir (the audit reads local files)")
        tasks = local_tasks(data_dir) if "all" in tasks else tasks
        for task in filter(is_task_file, tasks):  # a bad task file is an error whatever the protocol
            load_task_file(task)
        protocols = args.protocol or ["all"]
        protocols = [p for p in PROTOCOLS if p not in STUDY_SPLITS] if "all" in protocols else protocols
        boundaries = []
        for task in tasks:
            for protocol in protocols:
                try:
                    boundaries += audit_task(
                        task, protocol, data_dir, train_subset=args.train_subset, split_seed=args.split_seed
                    )
                except DataError as err:
                    if len(tasks) * len(protocols) == 1:
                        raise
                    print(f"note: {task} / {protocol} skipped: {err}", file=sys.stderr)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(boundaries))
    leaks = [b for b in boundaries if b.carved and b.shared]
    if leaks:
        print(f"error: {len(leaks)} boundary(ies) drawn by pet-lightning share text", file=sys.stderr)
        return 1
    return 0


__all__ = ["Boundary", "audit_plan", "audit_task", "local_tasks", "main", "markdown"]
