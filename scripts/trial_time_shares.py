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
epochs said ``train_s`` count their epochs as one ``epochs`` share.

    python -m scripts.trial_time_shares runs/studies/transferability_table3/cpu --slots 2
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
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


def sweep_shares(out: Path, slots: int | None) -> tuple[Counter, int]:
    """Seconds per phase summed over the runs under ``out/runs``, and the number of runs with a log."""
    total: Counter = Counter()
    spans: list[tuple[float, float]] = []
    logs = sorted((out / "runs").glob("*/progress.jsonl"))
    for log in logs:
        events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        phases, run_spans = run_phases(events)
        total.update(phases)
        spans += run_spans
    if slots and spans:
        held = sum(end - start for start, end in spans)
        wall = max(end for _, end in spans) - min(start for start, _ in spans)
        total["between trials"] += max(0.0, slots * wall - held)
    return total, len(logs)


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
    args = parser.parse_args(argv)
    total, runs = sweep_shares(args.out, args.slots)
    if not runs:
        raise SystemExit(f"error: no runs/*/progress.jsonl under {args.out}: give a sweep's out folder")
    print(table(total, runs))


if __name__ == "__main__":
    main()
