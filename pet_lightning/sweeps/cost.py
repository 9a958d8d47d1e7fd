"""What a sweep (a study's scale) will cost, before it runs: ``python cli.py study <file> --scale <s> --plan``.

For every run of :func:`~pet_lightning.sweeps.plan.plan_runs`: its training examples (counted from the data under
its protocol and ``train_subset`` where the data root has the task, else estimated from the task table and marked
``~``), its optimizer steps (epochs x batches, ``max_steps``, gradient accumulation; a two-stage method's stage 1
and stage 2 separately, since the two stages train different tensors and cost differently) and whether it would
be trained at all (an ``ok`` record in the results file or a run folder, or an identical run in a ``reuse_from``
folder). The wall time is steps x seconds per step + a per-run overhead, over the trials that run at once. The
step time is one the user states (``--step-seconds``, e.g. measured on a GPU) or timed here: a few training steps
of each distinct (strategy, task, max_length, batch size) on this machine, with the threads a trial gets; the
same timing fits measure the overhead (model build and data preparation, one validation pass, which a run repeats
each epoch, and one pass over the reported split, its final test).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pet_lightning.sweeps.cost_timing import TWO_STAGE, Timing, time_configuration
from pet_lightning.sweeps.files import SweepError
from pet_lightning.sweeps.plan import RESULTS_FILE, RunSpec, SweepConfig
from pet_lightning.sweeps.records import RECORD_FILE, finished_ids, load_results

# (strategy, task, max_length, batch size): runs that share it share a step time.
TimingKey = tuple[str, str, int, int]


@dataclass(frozen=True)
class Stage:
    key: TimingKey
    steps: int
    strategy: Any  # the strategy setting to time (a name or {"name": ..., **settings})


@dataclass
class RunCost:
    run: RunSpec
    train_examples: int
    exact: bool  # counted from the data (True) or estimated from the task table (False)
    epochs: int
    stages: list[Stage]
    state: str  # "finished", "reusable" or "to do"

    @property
    def steps(self) -> int:
        return sum(stage.steps for stage in self.stages)


def _setting(config: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if not isinstance(config, dict) or key not in config:
            return default
        config = config[key]
    return default if config is None else config


def _strategy_label(strategy: Any) -> str:
    if isinstance(strategy, dict):
        settings = ",".join(f"{k}={v}" for k, v in sorted(strategy.items()) if k != "name")
        return f"{strategy.get('name')}({settings})" if settings else str(strategy.get("name"))
    return str(strategy)


_EXAMPLES: dict[tuple, tuple[int, bool]] = {}


def train_examples(config: dict[str, Any]) -> tuple[int, bool]:
    """(training examples of the run, counted from the data?): the protocol's train split after ``train_subset``."""
    from pet_lightning.data.base import TaskDataModule
    from pet_lightning.data.protocol import HOLDOUT_FRACTION
    from pet_lightning.data.readers import default_data_dir
    from pet_lightning.tasks import get_task

    args = dict(_setting(config, "data", "init_args", default={}))
    keys = ("task", "data_dir", "protocol", "swap", "split_seed", "train_subset", "subset_seed")
    picked = {key: args[key] for key in keys if args.get(key) is not None}
    cache_key = tuple(sorted((k, str(v)) for k, v in picked.items()))
    if cache_key in _EXAMPLES:
        return _EXAMPLES[cache_key]
    spec = get_task(picked["task"])
    found: tuple[int, bool] | None = None
    # Without a data root the task would load from the hub: the plan never downloads, it estimates.
    if picked.get("data_dir") or default_data_dir():
        try:
            found = (len(TaskDataModule(**picked).plan_splits().train), True)
        except (OSError, ValueError):  # DataError is a ValueError: a task the data root lacks
            found = None
    if found is None:
        total = spec.train_subset or spec.train_size  # a variant's training split is its subset
        if picked.get("protocol", "standard").startswith("train_holdout"):
            total = round(total * (1 - HOLDOUT_FRACTION))
        subset = picked.get("train_subset")
        found = (min(total, int(subset)) if subset else total, False)
    _EXAMPLES[cache_key] = found
    return found


def run_stages(run: RunSpec, examples: int) -> tuple[int, list[Stage]]:
    """(epochs, the run's stages with their optimizer steps), as Lightning and TwoStageTraining count them."""
    config = run.config
    trainer = config.get("trainer", {})
    batch = int(_setting(config, "data", "init_args", "batch_size", default=32))
    max_length = int(_setting(config, "data", "init_args", "max_length", default=128))
    batches = math.ceil(examples / batch)
    limit = trainer.get("limit_train_batches")
    if limit is not None:
        batches = min(batches, int(limit)) if isinstance(limit, int) else int(batches * float(limit))
    per_epoch = max(1, math.ceil(batches / int(trainer.get("accumulate_grad_batches") or 1)))
    epochs = int(trainer.get("max_epochs") or 0)
    max_steps = int(trainer.get("max_steps") or -1)
    total = epochs * per_epoch if epochs > 0 else max_steps
    if max_steps > 0:
        total = min(total, max_steps)
    if total < 1:
        raise SweepError(f"run {run.run_id} sets neither trainer.max_epochs nor trainer.max_steps: set one of them")
    epochs = math.ceil(total / per_epoch)  # the epochs that run (each validates): fewer when max_steps stops first
    stage1 = _setting(config, "model", "strategy", default="full")
    two_stage = next((cb for cb in trainer.get("callbacks") or []
                      if str(cb.get("class_path", "")).endswith(TWO_STAGE)), None)
    if two_stage is None:
        return epochs, [Stage((_strategy_label(stage1), run.task, max_length, batch), total, stage1)]
    init = two_stage.get("init_args") or {}
    boundary = init.get("stage1_epochs") or max(1, round(float(init.get("stage1_fraction", 0.1)) * epochs))
    first = min(total, int(boundary) * per_epoch)
    stage2 = init.get("stage2_strategy", "full")
    return epochs, [Stage((_strategy_label(stage1), run.task, max_length, batch), first, stage1),
                    Stage((_strategy_label(stage2), run.task, max_length, batch), total - first, stage2)]


def run_states(sweep: SweepConfig, runs: list[RunSpec]) -> tuple[dict[str, str], list[str]]:
    """run id -> ``finished`` / ``reusable`` / ``to do``, and notes on ``reuse_from`` folders that are missing."""
    done = finished_ids(sweep.results_path)
    for run in runs:  # records a killed driver left in run folders: the sweep recovers them, so they are done
        stored = sweep.run_dir(run.run_id) / RECORD_FILE
        if run.run_id not in done and stored.is_file():
            record = json.loads(stored.read_text(encoding="utf-8"))
            if record.get("status") == "ok" and record.get("run_id") == run.run_id:
                done.add(run.run_id)
    sources: set[tuple[str, str]] = set()
    notes = []
    for folder in sweep.reuse_from:
        path = Path(folder) / RESULTS_FILE
        if not path.is_file():
            notes.append(f"reuse_from {path} does not exist yet: its runs count as to do here")
            continue
        sources |= {(r.get("run_hash", ""), r.get("config_hash", "")) for r in load_results(path)}
    states = {}
    for run in runs:
        if run.run_id in done:
            states[run.run_id] = "finished"
        elif (run.run_hash, run.config_hash) in sources:
            states[run.run_id] = "reusable"
        else:
            states[run.run_id] = "to do"
    return states, notes


def plan_costs(sweep: SweepConfig, runs: list[RunSpec]) -> tuple[list[RunCost], list[str]]:
    states, notes = run_states(sweep, runs)
    costs = []
    for run in runs:
        examples, exact = train_examples(run.config)
        epochs, stages = run_stages(run, examples)
        costs.append(RunCost(run, examples, exact, epochs, stages, states[run.run_id]))
    return costs, notes


def concurrency(sweep: SweepConfig, override: int | None = None) -> tuple[int, str]:
    """How many trials run at once, and why."""
    if override:
        return override, "--concurrency"
    if sweep.max_concurrent_trials:
        return sweep.max_concurrent_trials, "max_concurrent_trials"
    if sweep.gpus_per_trial > 0:
        return (max(1, int(1 / sweep.gpus_per_trial)),
                f"one GPU assumed, gpus_per_trial={sweep.gpus_per_trial:g}; --concurrency N for more GPUs")
    cpus = os.cpu_count() or 1
    return max(1, int(cpus // sweep.cpus_per_trial)), f"{cpus} CPUs here / cpus_per_trial={sweep.cpus_per_trial:g}"


# ---------------------------------------------------------------------------------------------- the plan
@dataclass
class Estimate:
    runs: int
    finished: int
    reusable: int
    todo: int
    steps_todo: int
    concurrency: int
    seconds: float  # wall time of the runs to do, over the concurrent trials

    @property
    def hours(self) -> float:
        return self.seconds / 3600


def _seconds_of(cost: RunCost, steps: dict[TimingKey, float], overhead: dict[TimingKey, Timing] | float) -> float:
    train = sum(stage.steps * steps[stage.key] for stage in cost.stages)
    if isinstance(overhead, (int, float)):
        return train + overhead
    timing = overhead[cost.stages[0].key]
    return train + timing.build_s + cost.epochs * timing.val_s + timing.test_s


def estimate_plan(sweep: SweepConfig, runs: list[RunSpec], step_seconds: float | None = None,
                  overhead_seconds: float | None = None, time_steps: int = 3, concurrent: int | None = None,
                  ) -> tuple[Estimate, str]:
    """The plan's counts and estimated wall time, and the text ``--plan`` prints."""
    costs, notes = plan_costs(sweep, runs)
    todo = [cost for cost in costs if cost.state == "to do"]
    width, why = concurrency(sweep, concurrent)
    lines = [f"[{sweep.name}] plan{f' at scale {sweep.scale}' if sweep.scale else ''}: {len(sweep.tasks)} task(s) x "
             f"{len(sweep.methods)} method(s) x {len(sweep.seed_modes)} seed mode(s) x {len(sweep.seeds)} seed(s) = "
             f"{len(runs)} runs; nothing is trained"]
    lines += [f"note: {note}" for note in notes]
    steps: dict[TimingKey, float] = {}
    overhead: dict[TimingKey, Timing] | float
    if step_seconds is not None:
        steps = defaultdict(lambda: float(step_seconds))
        overhead = float(overhead_seconds or 0.0)
        source = (f"step time {step_seconds:g} s as stated (--step-seconds); overhead per run "
                  f"{overhead:g} s {'as stated' if overhead_seconds else '(state it with --overhead-seconds)'}")
    else:
        timings: dict[TimingKey, Timing] = {}
        # Evaluation costs about the same whatever trains: timed once per (task, max_length, batch size).
        evaluations: dict[tuple, tuple[float, float]] = {}
        for cost in todo:
            for stage in cost.stages:
                if stage.key not in timings and stage.steps > 0:
                    data = stage.key[1:]
                    t = time_configuration(sweep, cost.run, stage, time_steps, validate=data not in evaluations)
                    evaluations.setdefault(data, (t.val_s, t.test_s))
                    timings[stage.key] = t = Timing(t.step_s, t.build_s, *evaluations[data])
                    label = "/".join([_short(stage.key[0]), *map(str, stage.key[1:])])
                    lines.append(f"timed {label}: {t.step_s:.3f} s/step ({time_steps} steps "
                                 f"after 1 warm-up, scaled to the epoch's mean batch length), "
                                 f"build {t.build_s:.1f} s, one validation {t.val_s:.1f} s, the test {t.test_s:.1f} s")
        steps = {key: t.step_s for key, t in timings.items()}
        overhead = timings
        if overhead_seconds is not None:
            overhead = float(overhead_seconds)
        source = (f"step times timed here with {max(1, int(sweep.cpus_per_trial))} thread(s) per trial; overhead per "
                  + (f"run {overhead_seconds:g} s as stated" if overhead_seconds is not None else
                     "run = build + a validation per epoch + the test, as timed"))
    header = ("task", "method", "modes", "seeds", "runs", "done", "reuse", "to do", "train ex.", "batch", "epochs",
              "steps/run", "s/step", "to do h")
    rows = [header]
    groups: dict[tuple[str, str], list[RunCost]] = defaultdict(list)
    for cost in costs:
        groups[(cost.run.task, cost.run.method)].append(cost)
    machine_s = 0.0
    for (task, method), group in groups.items():
        first = group[0]
        pending = [c for c in group if c.state == "to do"]
        seconds = sum(_seconds_of(c, steps, overhead) for c in pending)
        machine_s += seconds
        known = all(stage.key in steps for stage in first.stages) or step_seconds is not None
        rows.append((
            task, method, ",".join(dict.fromkeys(c.run.seed_mode for c in group)),
            _seed_list(sorted({c.run.seed for c in group})), str(len(group)),
            str(sum(c.state == "finished" for c in group)), str(sum(c.state == "reusable" for c in group)),
            str(len(pending)), f"{'' if first.exact else '~'}{first.train_examples}",
            str(_setting(first.run.config, "data", "init_args", "batch_size", default=32)), str(first.epochs),
            "+".join(str(s.steps) for s in first.stages),
            "/".join(f"{steps[s.key]:.3f}" for s in first.stages) if known else "-",
            f"{seconds / 3600:.2f}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if any(not c.exact for c in costs):
        lines.append("~ training examples estimated from the task table (the data root lacks the task or is unset)")
    result = Estimate(
        runs=len(costs), finished=sum(c.state == "finished" for c in costs),
        reusable=sum(c.state == "reusable" for c in costs), todo=len(todo),
        steps_todo=sum(c.steps for c in todo), concurrency=width, seconds=machine_s / width,
    )
    lines.append(f"{source}; {width} trial(s) at once ({why})")
    lines.append(f"total: {result.runs} runs, {result.finished} finished, {result.reusable} reusable, "
                 f"{result.todo} to do ({result.steps_todo} steps); estimated wall time {result.hours:.2f} h")
    return result, "\n".join(lines)


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _seed_list(seeds: list[int]) -> str:
    """``1-5`` for a run of consecutive seeds, else the list."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def add_plan_flags(parser: Any) -> None:
    """The ``--plan`` flags of ``cli.py study``."""
    parser.add_argument("--plan", action="store_true",
                        help="print the runs, their steps, what is reused and the estimated wall time; train nothing")
    parser.add_argument("--step-seconds", type=float, help="with --plan: seconds per training step (e.g. measured on "
                        "a GPU) instead of timing steps here")
    parser.add_argument("--overhead-seconds", type=float,
                        help="with --plan: seconds per run besides its steps (model build, evaluation)")
    parser.add_argument("--time-steps", type=int, default=3,
                        help="with --plan: steps timed per distinct configuration, after 1 warm-up (default 3)")
    parser.add_argument("--concurrency", type=int, help="with --plan: trials at once (default: the sweep's)")


def plan_command(sweep: SweepConfig, args: Any, overrides: dict[str, Any]) -> int:
    """``cli.py study <file> --plan``: print the plan and its estimate; 0, or SweepError for bad flags."""
    from pet_lightning.sweeps.plan import plan_runs

    for name, value in (("--step-seconds", args.step_seconds), ("--overhead-seconds", args.overhead_seconds)):
        if value is not None and value < 0:
            raise SweepError(f"{name} {value}: use a non-negative number of seconds")
    if args.time_steps < 1 or (args.concurrency is not None and args.concurrency < 1):
        raise SweepError("--time-steps and --concurrency take a positive number: e.g. --time-steps 3")
    for key, value in overrides.items():
        setattr(sweep, key, value)
    sweep.check_engine()
    _, text = estimate_plan(sweep, plan_runs(sweep), args.step_seconds, args.overhead_seconds, args.time_steps,
                            args.concurrency)
    print(text, flush=True)
    return 0
