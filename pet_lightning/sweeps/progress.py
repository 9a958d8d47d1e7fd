"""The driver's side of a running sweep: write each trial's record, print the progress line.

:class:`SweepRecorder` is the Ray Tune callback; Tune pickles it into the experiment (and unpickles it on
``Tuner.restore``), so it holds nothing and forwards every event to the :class:`SweepProgress` of the running
command (:func:`set_active`).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from ray import tune

from pet_lightning.sweeps.plan import RunSpec, SweepConfig, SweepError
from pet_lightning.sweeps.records import append_result, failed_record, finished_ids, load_results
from pet_lightning.sweeps.storage import fetch_run_folder

PRINT_EVERY_S = 60.0
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Fault|Interrupt|Exit)\b:?")
_NODE_LOST = "because its node has died"
_UNREACHABLE = "The task may or may not have been executed on the actor"
_ACTIVE: SweepProgress | None = None


def set_active(progress: SweepProgress | None) -> None:
    global _ACTIVE
    _ACTIVE = progress


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def error_line(trial) -> str:
    """The trial's exception (type and message) in one line, for records and the summary."""
    text = str(trial.get_error() or "")
    if not text and trial.error_file and Path(trial.error_file).is_file():
        # Read from storage_path, the error may not be there yet (a URI is synced later): the driver's own copy.
        text = Path(trial.error_file).read_text(encoding="utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Ray wraps the run's own exception in its traceback text; the last "SomethingError: ..." line is the cause.
    raised = [line for line in lines if _EXCEPTION_LINE.match(line)]
    where = f" (traceback: {trial.error_file})" if trial.error_file else ""
    # A lost node surfaces as a generic actor failure: say what it most likely was.
    lost = ""
    if _NODE_LOST in text:
        lost = "its Ray node was lost: "
    elif _UNREACHABLE in text:
        lost = "its Ray worker became unreachable (its node lost, or its process killed): "
    if raised:
        return lost + raised[-1] + where
    return lost + (lines[-1] if lines else "the trial failed without an error message") + where


class SweepProgress:
    """Counts runs, writes their records to ``results.jsonl`` and prints ``done / running / failed / left, ETA``."""

    def __init__(self, sweep: SweepConfig, runs: list[RunSpec], todo: list[RunSpec], done: set[str]):
        self.sweep = sweep
        self.runs = {run.run_id: run for run in runs}
        self.total = len(runs)
        self.done = len(done)
        self.failed: set[str] = set()
        self.running = 0
        records = load_results(sweep.results_path) if sweep.results_path.exists() else []
        self.walls = [float(r["wall_s"]) for r in records if r["run_id"] in done and r.get("wall_s")]
        self.last_line = ""
        self.last_print = 0.0

    def line(self) -> str:
        left = self.total - self.done - len(self.failed) - self.running
        eta = "ETA after the first finished run"
        if self.walls:
            # Runs still to go, spread over as many slots as are busy now (one while none is).
            remaining = sum(self.walls) / len(self.walls) * (left + self.running) / max(1, self.running)
            eta = f"ETA {_duration(remaining)}"
        return (f"[{self.sweep.name}] {self.done}/{self.total} done, {self.running} running, "
                f"{len(self.failed)} failed, {left} left; {eta}")

    def print_line(self, force: bool = False) -> None:
        line = self.line()
        now = time.monotonic()
        if force or line != self.last_line or now - self.last_print > PRINT_EVERY_S:
            print(line, flush=True)
            self.last_line, self.last_print = line, now

    def step(self, trials: list) -> None:
        self.running = sum(1 for trial in trials if trial.status == "RUNNING")
        self.print_line()

    def complete(self, trial) -> None:
        run = self.runs[trial.config["run_id"]]
        payload = trial.last_result.get("record_json")
        if payload is None:
            self.error(trial, "the trial ended without reporting its record")
            return
        record = json.loads(payload)
        if run.run_id in finished_ids(self.sweep.results_path):
            # A restored experiment whose last snapshot predates this run's end reran it (the trial only handed
            # back its stored record.json): the record is already in results.jsonl, and counted.
            return
        append_result(self.sweep.results_path, record)
        try:
            fetch_run_folder(record, self.sweep.run_dir(run.run_id))
        except SweepError as err:
            # The record is safe in results.jsonl; only the report's copy of the run folder is missing.
            print(f"[{self.sweep.name}] {err}", file=sys.stderr, flush=True)
        self.done += 1
        self.failed.discard(run.run_id)
        if record.get("wall_s"):
            self.walls.append(float(record["wall_s"]))
        print(f"[{self.sweep.name}] done {run.run_id}: test/{record['headline']}={record['score']:.4f} "
              f"steps={record['steps']} best_step={record['best_step']} wall_s={record['wall_s']}", flush=True)

    def recover(self, trial) -> None:
        print(f"[{self.sweep.name}] retrying {trial.config['run_id']} from its last epoch checkpoint after: "
              f"{error_line(trial)}", file=sys.stderr, flush=True)

    def error(self, trial, message: str | None = None) -> None:
        run = self.runs[trial.config["run_id"]]
        message = message or error_line(trial)
        append_result(self.sweep.results_path, failed_record(self.sweep, run, message))
        self.failed.add(run.run_id)
        print(f"[{self.sweep.name}] FAILED {run.run_id}: {message}", file=sys.stderr, flush=True)


class SweepRecorder(tune.Callback):
    """Ray Tune callback that forwards trial events to the active :class:`SweepProgress`."""

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if _ACTIVE is not None:
            _ACTIVE.step(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        if _ACTIVE is not None:
            _ACTIVE.complete(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info: Any) -> None:
        if _ACTIVE is not None:
            _ACTIVE.recover(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        if _ACTIVE is not None:
            _ACTIVE.error(trial)
