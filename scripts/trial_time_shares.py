"""Where a sweep's time went: training steps against everything else, from each run's ``progress.jsonl``.

Per attempt of a run (a Ray trial), the run log's events split its time into

* ``start-up``: from the trial's start to the first training step (model build, reading and tokenising the
  data, the sanity check);
* ``training steps``: each epoch's ``train_s`` (its steps with their data loading and logging);
* ``validation``: each epoch's ``validation_s``;
* ``checkpoints``: the rest of the time between epochs (the epoch checkpoint and Ray's copy of it);
* ``final test``: from the last epoch to the record (the kept model's test, predictions, the record).

With ``--slots`` (the trials that ran at once) the time no trial held a slot is added as ``between trials`` (Ray
starting workers and scheduling), from the first trial's start to the last record. Logs written before the
epochs said ``train_s`` count their epochs as one ``epochs`` share. A sweep resumed in a later sitting counts the
idle time between sittings as ``between trials``; ``--since`` keeps only the attempts that started at or after a
time (the resumed part).

    python -m scripts.trial_time_shares runs/studies/transferability_table3/cpu --slots 2
    python -m scripts.trial_time_shares runs/studies/revisiting_iterations/cpu --slots 2 --since 2026-12-07T00:46Z
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

PHASES = ("start-up", "training steps", "validation", "checkpoints", "epochs", "final test", "between trials")


def run_phases(events: list[dict]) -> tuple[Counter, list[tuple[float, float]]]:
    """Seconds per phase of one run's events, and the (start, end) of each attempt."""
    phases: Counter = Counter()
    spans, attempt, last, clock = [], None, None, None
    for event in events:
        kind, now = event["event"], float(event["time"])
        if kind == "trial":
            if attempt is not None and clock is not None:
                spans.append((attempt, clock))
            attempt, last, clock = now, None, now
        elif kind == "start" and attempt is not None:
            phases["start-up"] += now - clock
            last = clock = now
        elif kind == "epoch" and last is not None:
            between = now - last
            if "train_s" in event:
                train, validation = float(event["train_s"]), float(event["validation_s"])
                phases["training steps"] += train
                phases["validation"] += validation
                phases["checkpoints"] += max(0.0, between - train - validation)
            else:
                phases["epochs"] += between
            last = clock = now
        elif kind == "done" and last is not None:
            phases["final test"] += now - last
            clock = now
    if attempt is not None and clock is not None:
        spans.append((attempt, clock))
    return phases, spans


def attempts_since(events: list[dict], since: float) -> list[dict]:
    """The events of the attempts (each from its ``trial`` event) that started at or after ``since``."""
    kept, keep = [], False
    for event in events:
        if event["event"] == "trial":
            keep = float(event["time"]) >= since
        if keep:
            kept.append(event)
    return kept


def sweep_shares(out: Path, slots: int | None, since: float | None = None) -> tuple[Counter, int]:
    """Seconds per phase summed over the runs under ``out/runs``, and the number of runs with a log (with
    ``since``: with an attempt that started at or after it, the only attempts counted)."""
    total: Counter = Counter()
    spans: list[tuple[float, float]] = []
    runs = 0
    for log in sorted((out / "runs").glob("*/progress.jsonl")):
        events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        if since is not None:
            events = attempts_since(events, since)
        phases, run_spans = run_phases(events)
        total.update(phases)
        spans += run_spans
        runs += bool(run_spans)
    if slots and spans:
        held = sum(end - start for start, end in spans)
        wall = max(end for _, end in spans) - min(start for start, _ in spans)
        total["between trials"] += max(0.0, slots * wall - held)
    return total, runs


def _utc_time(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        message = f"--since {text!r} is not a time: give ISO 8601 UTC, e.g. 2026-12-07T00:46Z"
        raise argparse.ArgumentTypeError(message) from error
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"--since {text!r} has no time zone: end it with Z for UTC")
    return moment.timestamp()


def table(total: Counter, runs: int) -> str:
    seconds = sum(total.values())
    lines = [f"{runs} runs, {seconds / 60:.1f} slot-minutes", "| phase | minutes | share | s per run |",
             "|---|---:|---:|---:|"]
    for phase in PHASES:
        if total.get(phase):
            lines.append(f"| {phase} | {total[phase] / 60:.1f} | {100 * total[phase] / seconds:.1f}% | "
                         f"{total[phase] / runs:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the sweep's out folder (the one holding runs/)")
    parser.add_argument("--slots", type=int, default=None, help="trials that ran at once (max_concurrent_trials)")
    parser.add_argument("--since", type=_utc_time, default=None,
                        help="count only the attempts that started at or after this UTC time (ISO 8601, e.g. "
                             "2026-12-07T00:46Z): the part of a sweep resumed in a later sitting")
    args = parser.parse_args(argv)
    total, runs = sweep_shares(args.out, args.slots, args.since)
    if not runs:
        after = " with an attempt at or after --since" if args.since is not None else ""
        raise SystemExit(f"error: no runs/*/progress.jsonl{after} under {args.out}: give a sweep's out folder")
    print(table(total, runs))


if __name__ == "__main__":
    main()
