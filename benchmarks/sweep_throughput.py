"""Sweep throughput on Ray Tune: one trial at a time with all threads vs. several concurrent single-CPU trials.

``python -m benchmarks.sweep_throughput [--runs 8] [--cpus 2] [--repeats 2]`` runs the same BitFit sweep on CB
(the study's ``configs/revisiting/cb_bitfit.yaml``, shortened like ``sweep_cb.yaml``: 2 epochs, 64 tokens) on
both sides, each pass through ``python cli.py sweep`` in a fresh process with its own local Ray instance:

* ``sequential``: ``max_concurrent_trials: 1``, ``cpus_per_trial: <cpus>`` (one run uses every thread);
* ``concurrent``: ``max_concurrent_trials: <cpus>``, ``cpus_per_trial: 1`` (one thread per run).

It prints runs/hour of each (whole command, Ray start included) and their ratio, and Ray's per-trial overhead from
the runs' ``progress.jsonl`` events: from a trial's start (the trainable entered; for the first trial, the command's
start) to its first training step, split into the part before the trainable runs (Ray: actor start, scheduling,
handing over the previous slot) and the part inside it (building the LightningCLI, model and data).
GPU variant: ``--gpus 1 0.25`` compares whole-GPU trials with four trials sharing one GPU.
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

import yaml

from pet_lightning.precision import cpu_bf16_emulated

REPO_ROOT = Path(__file__).resolve().parents[1]


def sweep_file(folder: Path, label: str, runs: int, cpus: float, concurrent: int, gpus: float) -> Path:
    settings = {
        "name": f"throughput_{label}",
        "out": str(folder / label),
        "tasks": ["cb"],
        "methods": {"bitfit": {"config": str(REPO_ROOT / "configs/revisiting/{task}_{method}.yaml")}},
        "seeds": runs,
        "protocol": "dev_split",
        "select": {"monitor": "val/loss", "patience": None},
        # The method file says bf16-mixed; where this CPU emulates bf16 (15x slower), 32-true measures the engine.
        "task_overrides": {"cb": {"trainer": {"max_epochs": 2, "log_every_n_steps": 8,
                                              **({"precision": "32-true"} if cpu_bf16_emulated() else {})},
                                  "data": {"init_args": {"max_length": 64, "batch_size": 16}}}},
        "wandb": False,
        "cpus_per_trial": cpus,
        "gpus_per_trial": gpus,
        "max_concurrent_trials": concurrent,
        "max_failures": 0,
    }
    path = folder / f"sweep_{label}.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def run_side(folder: Path, label: str, runs: int, cpus: float, concurrent: int, gpus: float) -> dict[str, float]:
    config = sweep_file(folder, label, runs, cpus, concurrent, gpus)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": str(max(1, int(cpus)))}
    start = time.time()
    done = subprocess.run([sys.executable, "cli.py", "sweep", "--config", str(config)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.time() - start
    if done.returncode != 0:
        raise SystemExit(f"{label}: the sweep failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    events = []
    for path in (folder / label / "runs").glob("*/progress.jsonl"):
        events.append([json.loads(line) for line in path.read_text().splitlines()])
    firsts = sorted(events, key=lambda run: run[0]["time"])
    before, inside, fit = [], [], []
    ends: list[float] = []
    for run in firsts:
        trial = next(e["time"] for e in run if e["event"] == "trial")
        step = next(e["time"] for e in run if e["event"] == "start")
        end = next(e["time"] for e in run if e["event"] == "done")
        # A trial's start: the command's start for the first trials to get a slot, else when a slot was freed.
        free = sorted(ends)[-concurrent] if len(ends) >= concurrent else start
        before.append(max(0.0, trial - max(free, start)))
        inside.append(step - trial)
        fit.append(end - step)
        ends.append(end)
    return {"wall_s": wall, "runs_per_hour": runs / wall * 3600, "ray_s": statistics.median(before),
            "setup_s": statistics.median(inside), "first_ray_s": before[0], "fit_s": statistics.median(fit)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="BitFit runs (CB seeds) per side")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the machine to use")
    parser.add_argument("--repeats", type=int, default=1,
                        help="passes over both sides in alternating order (A B, B A, ...): load drifts")
    parser.add_argument("--gpus", type=float, nargs=2, metavar=("WHOLE", "SHARE"),
                        help="GPU variant: gpus_per_trial of the two sides (e.g. 1 0.25)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sweep-throughput-") as tmp:
        folder = Path(tmp)
        if args.gpus:
            whole, share = args.gpus
            sides = {f"gpus_per_trial={whole:g}": (1, 1, whole),
                     f"gpus_per_trial={share:g}": (1, max(1, round(1 / share)), share)}
        else:
            sides = {f"sequential (1 trial x {args.cpus} threads)": (args.cpus, 1, 0.0),
                     f"concurrent ({args.cpus} trials x 1 thread)": (1, args.cpus, 0.0)}
        passes: list[dict[str, dict[str, float]]] = []
        for repeat in range(args.repeats):
            order = list(sides.items()) if repeat % 2 == 0 else list(sides.items())[::-1]
            figures = {}
            for label, (cpus, concurrent, gpus) in order:
                index = list(sides).index(label)
                figures[label] = run_side(folder, f"pass{repeat}_side{index}", args.runs, cpus, concurrent, gpus)
            passes.append({label: figures[label] for label in sides})
    print(f"{args.runs} BitFit runs on CB (2 epochs, 64 tokens), python cli.py sweep on a local Ray instance")
    print(f"{'pass side':44s} {'wall s':>8s} {'runs/h':>8s} {'fit s':>7s} {'ray s':>7s} {'setup s':>8s} "
          f"{'1st ray s':>9s}")
    ratios = []
    for repeat, figures in enumerate(passes):
        for label, f in figures.items():
            print(f"{repeat:<4d} {label:39s} {f['wall_s']:8.1f} {f['runs_per_hour']:8.1f} {f['fit_s']:7.1f} "
                  f"{f['ray_s']:7.1f} {f['setup_s']:8.1f} {f['first_ray_s']:9.1f}")
        first, second = figures.values()
        ratios.append(second["runs_per_hour"] / first["runs_per_hour"])
    print(f"ratio (second / first side, runs/hour) per pass: {', '.join(f'{r:.2f}x' for r in ratios)}; "
          f"median {statistics.median(ratios):.2f}x")
    print("fit s: median first training step -> run recorded; ray s: median slot free -> trainable entered (actor "
          "start, scheduling); setup s: median trainable entered -> first training step; 1st ray s: command start -> "
          "first trainable entered (imports, Ray start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
