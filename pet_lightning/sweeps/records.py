"""``results.jsonl``: one JSON line per finished run (``status`` ``ok`` or ``failed``), the file ``report`` reads.

The sweep's driver appends a record when a trial ends; each trial also leaves its record in
``<out>/runs/<run_id>/record.json``, so a record the driver could not write (it was killed at that moment) is
recovered on the next start instead of the run being redone. Appends take an exclusive POSIX lock (``lockf``, which
works on NFS too) and write one whole line, so concurrent writers lose nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import platform
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pet_lightning.sweeps.plan import RESULTS_FILE, RunSpec, SweepConfig, SweepError
from pet_lightning.tasks import get_task, resource_group_for

RECORD_FILE = "record.json"
# Path fields of a record: relative to the folder of its results.jsonl (the sweep's out), so that a committed
# folder names no machine's paths; records written before issue 34 hold absolute ones.
PATH_FIELDS = ("config_path", "checkpoint", "predictions")
PROVENANCE_PACKAGES = ("torch", "transformers", "peft", "lightning")


class ResultRecord(dict):
    """A record as read from a results file: a plain dict (what is written back is only its items) that also knows
    ``folder``, the folder of the results file it came from, against which its relative paths resolve."""

    folder: Path | None = None


def run_path(record: dict[str, Any], field: str, folder: str | Path | None = None) -> Path | None:
    """The path a record's ``field`` names (None when it names none): absolute as written by old records,
    otherwise under ``folder`` (default: the folder of the results file the record was read from)."""
    value = record.get(field)
    if not value:
        return None
    path = Path(str(value))
    base = folder if folder is not None else getattr(record, "folder", None)
    return path if path.is_absolute() or base is None else Path(base) / path


def relative_to_out(path: str | Path, out: str | Path) -> str:
    """``path`` relative to a sweep's out folder, with ``/`` separators (what a record stores)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(out).resolve())).as_posix()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive POSIX lock on ``path`` (a sidecar file), held for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


def append_result(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line under the lock; refuse to glue it onto a cut-off last line left by a crashed writer."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    with file_lock(path.with_name(path.name + ".lock")), open(path, "ab+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                number = _line_count(path)
                raise SweepError(
                    f"{path}:{number}: the last line is cut off (a writer crashed mid-line): delete line {number} "
                    "and run the sweep again (records of finished runs are recovered from their run folders)"
                )
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") + 1


def load_results(*paths: str | Path, include_failed: bool = False) -> list[dict[str, Any]]:
    """Records of finished runs in one or more results files, one per ``run_id``.

    An ``ok`` record of a run wins over its ``failed`` ones (a failed run that a later sweep retried); otherwise the
    first record of a ``run_id`` is kept. Failed runs are left out unless ``include_failed``. Records written before
    the ``status`` field existed are ``ok``.
    """
    records: dict[str, dict[str, Any]] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise SweepError(f"results file {path} does not exist: pass the results.jsonl a sweep wrote")
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                if number == len(lines) and not text.endswith("\n"):
                    raise SweepError(
                        f"{path}:{number}: the last line is cut off (a writer crashed mid-line): delete line {number} "
                        "and run the sweep again (records of finished runs are recovered from their run folders)"
                    ) from None
                raise SweepError(f"{path}:{number}: not a JSON line ({err.msg}): remove or repair that line") from None
            record = ResultRecord(record)
            record.folder = path.parent
            record.setdefault("status", "ok")
            kept = records.get(record["run_id"])
            if kept is None or (kept["status"] != "ok" and record["status"] == "ok"):
                records[record["run_id"]] = record
    return [record for record in records.values() if include_failed or record["status"] == "ok"]


def finished_ids(path: Path) -> set[str]:
    """Run ids with an ``ok`` record: never run again."""
    return {record["run_id"] for record in load_results(path)} if path.exists() else set()


def recover_records(sweep: SweepConfig, runs: list[RunSpec]) -> list[str]:
    """Append the ``record.json`` of runs that finished while no driver was there to record them; their ids."""
    done = finished_ids(sweep.results_path)
    recovered = []
    for run in runs:
        stored = sweep.run_dir(run.run_id) / RECORD_FILE
        if run.run_id in done or not stored.is_file():
            continue
        record = json.loads(stored.read_text(encoding="utf-8"))
        if record.get("status") == "ok" and record.get("run_id") == run.run_id:
            append_result(sweep.results_path, record)
            recovered.append(run.run_id)
    return recovered


def adopt_reused_records(sweep: SweepConfig, runs: list[RunSpec]) -> list[str]:
    """Append, for runs not yet finished here, the ``ok`` record of the identical run in a ``reuse_from`` folder;
    their ids.

    Identical means the same ``run_hash`` (merged config, selection, init and order seeds) and the same
    ``config_hash`` (config, selection, protocol): the run would train the same model again. The adopted record
    keeps what was measured and where it ran (``provenance``) under this sweep's identity (run id, method name,
    study), with ``reused_from`` naming the source results file (relative to this sweep's out) and run id. Its
    per-example predictions are copied into this sweep's run folder (a committed study folder is then complete);
    its other paths are rewritten relative to this sweep's out and still point into the source folder.
    """
    if not sweep.reuse_from:
        return []
    # (run_hash, config_hash) -> the first ok record of that run in the folders, and the results file it is in.
    sources: dict[tuple[str, str], tuple[dict[str, Any], Path]] = {}
    for folder in sweep.reuse_from:
        path = Path(folder) / RESULTS_FILE
        if not path.is_file():
            raise SweepError(f"reuse_from: {path} does not exist: run that sweep first (its runs are reused here), "
                             f"or remove {folder} from reuse_from")
        for record in load_results(path):
            sources.setdefault((record.get("run_hash", ""), record.get("config_hash", "")), (record, path.resolve()))
    done = finished_ids(sweep.results_path)
    adopted = []
    for run in runs:
        if run.run_id in done or (run.run_hash, run.config_hash) not in sources:
            continue
        source, path = sources[(run.run_hash, run.config_hash)]
        identity = {k: v for k, v in _identity(sweep, run).items() if k not in ("host", "finished_at")}
        record = dict(source) | identity
        record["reused_from"] = {"results": relative_to_out(path, sweep.out), "run_id": source["run_id"]}
        for field in PATH_FIELDS:
            located = run_path(source, field, path.parent)
            record[field] = None if located is None else relative_to_out(located, sweep.out)
        predictions = run_path(source, "predictions", path.parent)
        if predictions is not None and predictions.is_file():
            copied = sweep.run_dir(run.run_id) / predictions.name
            copied.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(predictions, copied)
            record["predictions"] = relative_to_out(copied, sweep.out)
        append_result(sweep.results_path, record)
        adopted.append(run.run_id)
    return adopted


def _identity(sweep: SweepConfig, run: RunSpec) -> dict[str, Any]:
    spec = get_task(run.task)
    # Where the scale knowingly differs from the study's code: the report header prints it from the records.
    differences = sweep.deliberate_differences
    differences = {"deliberate_differences": dict(differences)} if differences else {}
    return {
        **differences,
        "sweep": sweep.name,
        "study": sweep.study,
        "scale": sweep.scale,
        "run_id": run.run_id,
        "task": run.task,
        "method": run.method,
        "seed": run.seed,
        "seed_mode": run.seed_mode,
        "init_seed": run.init_seed,
        "order_seed": run.order_seed,
        "protocol": sweep.protocol,
        "monitor": sweep.select["monitor"],
        "config_hash": run.config_hash,
        "run_hash": run.run_hash,
        "headline": spec.headline,
        "train_size": spec.train_size,
        "official_train_size": spec.train_size,
        "official_resource_group": spec.resource_group,
        "host": socket.gethostname(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def ok_record(sweep: SweepConfig, run: RunSpec, **fields: Any) -> dict[str, Any]:
    """The record of a run that finished: its identity, what it trained on, its selection and its report.

    ``fields`` holds what the run measured (``train_examples``, ``report``, ``best_selection``, ``steps``, ...);
    ``resource_group`` is that of the examples it trained on, ``official_resource_group`` that of the task;
    ``provenance`` the code, packages and machine it ran on (:func:`provenance`).
    """
    record = {**_identity(sweep, run), "provenance": provenance(), **fields, "status": "ok"}
    record["resource_group"] = resource_group_for(int(record["train_examples"]))
    record["score"] = record["report"]["headline"]
    return record


def failed_record(sweep: SweepConfig, run: RunSpec, error: str, wall_s: float | None = None) -> dict[str, Any]:
    """The record of a run that still failed after its retries."""
    return {**_identity(sweep, run), "status": "failed", "error": error, "wall_s": wall_s}


@functools.lru_cache(maxsize=1)
def code_commit() -> str:
    """The git commit of the installed package's checkout (``-dirty`` when tracked files differ from it), or
    ``unknown`` outside a checkout (an installed wheel, no git)."""
    folder = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "."], cwd=folder.parent,
                               capture_output=True, timeout=30).returncode == 1
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if commit and dirty else commit or "unknown"


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in PROVENANCE_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_model() -> str | None:
    """The name of the CUDA device this process uses, or None on the CPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(torch.cuda.current_device())


def provenance() -> dict[str, Any]:
    """What a run's figures came from, written with its record: the code's commit, the package versions and the
    machine (a report header names them, so two reports that differ can be told apart)."""
    return {"commit": code_commit(), "versions": package_versions(), "cpu": cpu_model(), "gpu": gpu_model()}
