"""Sweep throughput on a two-node Ray cluster vs. the embedded engine, with the same CPUs on both sides.

``python -m benchmarks.cluster_throughput [--runs 8] [--repeats 1]`` runs the BitFit sweep on CB of
:mod:`benchmarks.sweep_throughput` (2 epochs, 64 tokens, one CPU per run, two runs at a time) through
``python cli.py sweep`` in a fresh process on both sides:

* ``embedded``: no ``--address``; the command starts a local Ray instance with this machine's CPUs;
* ``cluster``: ``--address`` of a ``ray start`` head and a ``ray start`` worker on this machine, one CPU each
  (started once, before the timed commands, as a cluster a user joins; its start time is printed apart).

It prints runs/hour of each (the whole command), the span from the first trial to the last run's end (the engine
without the command's start) and the ratio cluster / embedded. The sides alternate within each pass.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.sweep_throughput import sweep_file
from tests.helpers.ray_cluster import LocalRayCluster

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_side(folder: Path, label: str, runs: int, address: str | None, auth: dict[str, str]) -> dict[str, float]:
    config = sweep_file(folder, label, runs, cpus=1, concurrent=2, gpus=0.0)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **(auth if address else {})}
    command = [sys.executable, "cli.py", "sweep", "--config", str(config)]
    if address:
        command += ["--address", address]
    start = time.time()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - start
    if done.returncode != 0:
        raise SystemExit(f"{label}: the sweep failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    events = [json.loads(line) for path in (folder / label / "runs").glob("*/progress.jsonl")
              for line in path.read_text().splitlines()]
    first = min(e["time"] for e in events if e["event"] == "trial")
    last = max(e["time"] for e in events if e["event"] == "done")
    nodes = {e.get("node") for e in events if e["event"] == "trial"}
    return {"wall_s": wall, "runs_per_hour": runs / wall * 3600, "span_s": last - first,
            "span_runs_per_hour": runs / (last - first) * 3600, "first_trial_s": first - start, "nodes": len(nodes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="BitFit runs (CB seeds) per side")
    parser.add_argument("--repeats", type=int, default=1, help="passes over both sides, in alternating order")
    args = parser.parse_args(argv)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    started = time.time()
    cluster = LocalRayCluster(env).start(workers=1)
    cluster_start = time.time() - started
    passes = []
    try:
        with tempfile.TemporaryDirectory(prefix="cluster-throughput-") as tmp:
            sides = {"embedded (local Ray, 2 CPUs)": None, "cluster (2 nodes x 1 CPU)": cluster.address}
            for repeat in range(args.repeats):
                order = list(sides) if repeat % 2 == 0 else list(sides)[::-1]
                figures = {label: run_side(Path(tmp), f"pass{repeat}_side{list(sides).index(label)}", args.runs,
                                           sides[label], cluster.auth_env) for label in order}
                passes.append({label: figures[label] for label in sides})
    finally:
        cluster.stop()
    print(f"{args.runs} BitFit runs on CB (2 epochs, 64 tokens), 1 CPU per run, 2 at a time; cluster start "
          f"(head + worker, before the timed commands): {cluster_start:.1f} s")
    print(f"{'pass side':36s} {'wall s':>7s} {'runs/h':>7s} {'span s':>7s} {'span runs/h':>11s} {'1st trial s':>11s} "
          f"{'nodes':>5s}")
    ratios, span_ratios = [], []
    for repeat, figures in enumerate(passes):
        for label, f in figures.items():
            print(f"{repeat:<4d} {label:31s} {f['wall_s']:7.1f} {f['runs_per_hour']:7.1f} {f['span_s']:7.1f} "
                  f"{f['span_runs_per_hour']:11.1f} {f['first_trial_s']:11.1f} {f['nodes']:5d}")
        embedded, on_cluster = figures.values()
        ratios.append(on_cluster["runs_per_hour"] / embedded["runs_per_hour"])
        span_ratios.append(on_cluster["span_runs_per_hour"] / embedded["span_runs_per_hour"])
    print(f"cluster / embedded runs/hour: {', '.join(f'{r:.3f}' for r in ratios)} (median "
          f"{statistics.median(ratios):.3f}); first trial -> last run: {', '.join(f'{r:.3f}' for r in span_ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
