"""Speed and memory of pet_lightning next to what users would otherwise run, in one invocation.

    python -m benchmarks.run                      # full run (wall time measured: docs/performance.md)
    python -m benchmarks.run --quick              # smoke run (tiny batches, every section)
    python -m benchmarks.run --accelerator cuda   # on a GPU

Sections (``--sections``):

* ``strategies``: every strategy of our loop alone on real RTE batches: samples/s, eval samples/s, step time, peak
  memory, optimizer and checkpoint bytes (:mod:`benchmarks.strategy_table`);
* ``ab``: per-step speed of ours against a hand-written loop and against Hugging Face Trainer + peft, the loops
  interleaved in short blocks on the same batches, each ratio with its 95% interval over fresh builds of the
  loops, in every precision of ``--precisions`` (:mod:`benchmarks.interleave`, :mod:`benchmarks.runners`);
* ``e2e``: time to result of a complete run (fit, keep the best checkpoint on the selection split, early stopping,
  test it) against Trainer + peft with ``load_best_model_at_end`` (:mod:`benchmarks.end_to_end`);
* ``cache``: linear-probing epochs with and without the feature cache; ``scaling``: time per epoch against
  training-set size and maximum length (extrapolated from timed steps).

A target on a ratio with an interval reads PASS only when the whole interval clears its threshold, SHORT when the
whole interval lies below it, ``unresolved`` otherwise (:mod:`benchmarks.intervals`). Every runner trains the
same model (the offline MiniLM unless ``--backbone``), with the same batch size, maximum length, precision and
thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmarks import report_tables
from benchmarks.common import PRECISIONS, Settings, Workload, progress, quiet_libraries
from benchmarks.end_to_end import run_end_to_end
from benchmarks.interleave import run_ab
from benchmarks.strategy_table import STRATEGY_ROWS, memory_pass, run_cache, run_scaling, run_strategies
from benchmarks.timing import exact_rss_mode
from pet_lightning.backbones import DEFAULT_BACKBONE
from pet_lightning.precision import cpu_bf16_emulated, cpu_bf16_slowdown
from pet_lightning.strategies import STRATEGIES

SECTIONS = Settings().sections
AUTO = "auto"
# A GPU queues steps ahead of the host: a few steps are mostly allocator and cuBLAS warm-up, and one-step blocks
# time launch latency. Named values win.
CUDA_MIN_STEPS = 20
CUDA_MIN_BLOCK_STEPS = 5
QUICK: dict[str, Any] = {
    "batch_size": 8, "max_length": 64, "warmup": 1, "steps": 2, "repeats": 2, "eval_batches": 1,
    "cache_examples": 32, "cache_epochs": 2, "scaling_sizes": (64, 128), "scaling_lengths": (32, 64),
    "scaling_steps": 2, "ab_methods": ("full", "lora"), "ab_builds": 2, "ab_blocks": 3, "ab_block_steps": 1,
    "e2e_methods": ("bitfit",), "e2e_repeats": 2, "e2e_epochs": 1, "e2e_patience": 1, "e2e_train_subset": 16,
    "e2e_max_length": 64,
}


def _names(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: use a positive count")
    return value


def parser() -> argparse.ArgumentParser:
    d = Settings()
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run: few steps, short inputs, every section")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precisions", default=AUTO,
                   help="comma-separated; the A/B comparisons run in each, the strategies table in the first (auto: "
                        f"{', '.join(PRECISIONS)}, less bf16-mixed on a CPU that emulates bf16)")
    p.add_argument("--threads", type=_positive, default=2, help="torch CPU threads (the same for every runner)")
    p.add_argument("--batch-size", type=_positive, default=None, help=f"default {d.batch_size}")
    p.add_argument("--max-length", type=_positive, default=None, help=f"default {d.max_length}")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--sections", default=",".join(d.sections))
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    g = p.add_argument_group("strategies table")
    g.add_argument("--strategies", default="", help="comma-separated rows (default: all)")
    g.add_argument("--steps", type=_positive, default=None, help=f"timed steps per repeat (default {d.steps})")
    g.add_argument("--repeats", type=_positive, default=None, help=f"default {d.repeats}")
    g = p.add_argument_group("interleaved A/B per step")
    g.add_argument("--methods", default=None, help=f"default {','.join(d.ab_methods)}")
    g.add_argument("--ab-sides", default="plain,trainer", help="sides compared with ours: plain, trainer")
    g.add_argument("--builds", type=_positive, default=None,
                   help=f"fresh builds of the sides per method and precision; the interval is over build means "
                        f"(default {d.ab_builds}; 1: one build, the interval over its blocks)")
    g.add_argument("--blocks", type=_positive, default=None,
                   help=f"kept blocks per side in each build (default {d.ab_blocks})")
    g.add_argument("--block-steps", type=_positive, default=None,
                   help=f"timed steps per block (default {d.ab_block_steps}; on CUDA at least {CUDA_MIN_BLOCK_STEPS})")
    g = p.add_argument_group("end to end")
    g.add_argument("--e2e-tasks", default=None, help=f"cb and/or rte (default {','.join(d.e2e_tasks)})")
    g.add_argument("--e2e-methods", default=None, help=f"default {','.join(d.e2e_methods)}")
    g.add_argument("--e2e-precision", default=AUTO,
                   help=f"auto: {d.e2e_precision}, or 32-true on a CPU that emulates bf16")
    g.add_argument("--e2e-repeats", type=_positive, default=None, help=f"default {d.e2e_repeats}")
    g.add_argument("--e2e-epochs", type=_positive, default=None, help=f"default {d.e2e_epochs}")
    g.add_argument("--e2e-patience", type=_positive, default=None, help=f"default {d.e2e_patience}")
    g.add_argument("--e2e-train-subset", type=int, default=None,
                   help=f"training examples (0: all; default {d.e2e_train_subset})")
    g.add_argument("--e2e-max-length", type=_positive, default=None, help=f"default {d.e2e_max_length}")
    return p


OPTIONS = {  # argparse name -> Settings field, with the converter of comma-separated lists
    "batch_size": ("batch_size", None), "max_length": ("max_length", None), "steps": ("steps", None),
    "repeats": ("repeats", None), "methods": ("ab_methods", _names), "builds": ("ab_builds", None),
    "blocks": ("ab_blocks", None), "block_steps": ("ab_block_steps", None),
    "e2e_tasks": ("e2e_tasks", _names),
    "e2e_methods": ("e2e_methods", _names),
    "e2e_repeats": ("e2e_repeats", None), "e2e_epochs": ("e2e_epochs", None),
    "e2e_patience": ("e2e_patience", None), "e2e_max_length": ("e2e_max_length", None),
}



def device_identity(accelerator: str) -> dict[str, Any]:
    """What the figures were measured on: figures from different cards or CUDA versions are not comparable."""
    identity: dict[str, Any] = {"accelerator": accelerator, "torch": torch.__version__}
    if accelerator == "cuda" and torch.cuda.is_available():
        index = torch.cuda.current_device()
        identity.update(gpu=torch.cuda.get_device_name(index), cuda=torch.version.cuda,
                        capability=list(torch.cuda.get_device_capability(index)), gpus=torch.cuda.device_count())
    return identity


def bf16_emulated(accelerator: str) -> bool:
    """Whether bf16 runs emulated here (CPU only: :func:`pet_lightning.precision.cpu_bf16_emulated`)."""
    return accelerator == "cpu" and cpu_bf16_emulated()


def resolve_precisions(precisions: str, e2e_precision: str, accelerator: str,
                       e2e_default: str) -> tuple[tuple[str, ...], str]:
    """``auto`` made concrete: bf16-mixed is timed only where the device runs it natively. On a CPU that emulates
    bf16 a step takes many times longer than in 32-true (``docs/performance.md``): the run would take hours and
    time an emulation no user keeps. Naming bf16-mixed still times it, with a printed warning."""
    # On CUDA auto also times 16-mixed (the loss-scaled path GPUs without bf16 use); CPUs have no fp16 kernels.
    auto = (*PRECISIONS, "16-mixed") if accelerator == "cuda" else PRECISIONS
    wanted = (*(auto if precisions == AUTO else _names(precisions)),
              e2e_default if e2e_precision == AUTO else e2e_precision)
    emulated = any("bf16" in p for p in wanted) and bf16_emulated(accelerator)
    chosen = _names(precisions) if precisions != AUTO else tuple(
        p for p in auto if not (emulated and "bf16" in p))
    e2e = e2e_precision if e2e_precision != AUTO else ("32-true" if emulated else e2e_default)
    if emulated:
        timed = [p for p in (*chosen, e2e) if "bf16" in p]
        progress(f"this CPU emulates bf16 (a bf16 linear layer {cpu_bf16_slowdown():.1f}x slower than float32, "
                 f"measured): per step {', '.join(chosen)}, end to end {e2e}; " + (
                     "bf16 steps will take about 15x longer" if timed else
                     "name bf16-mixed in --precisions or --e2e-precision to time it anyway"))
    return chosen, e2e


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings(backbone=args.backbone, accelerator=args.accelerator, threads=args.threads)
    if args.quick:
        settings = Settings(**{**asdict(settings), **QUICK})
    for option, (name, convert) in OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            setattr(settings, name, convert(value) if convert else value)
    if args.e2e_train_subset is not None:
        settings.e2e_train_subset = args.e2e_train_subset or None
    if settings.accelerator == "cuda":
        settings.steps = args.steps or max(settings.steps, CUDA_MIN_STEPS)
        settings.ab_block_steps = args.block_steps or max(settings.ab_block_steps, CUDA_MIN_BLOCK_STEPS)
    settings.precisions, settings.e2e_precision = resolve_precisions(
        args.precisions, args.e2e_precision, settings.accelerator, settings.e2e_precision)
    settings.precision = settings.precisions[0] if settings.precisions else settings.precision
    settings.strategies = _names(args.strategies)
    settings.sections = _names(args.sections)
    return settings


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser()
    args = p.parse_args(argv)
    if args.accelerator == "cuda" and not torch.cuda.is_available():
        p.error("--accelerator cuda: no CUDA device is visible; run on a GPU machine or use --accelerator cpu")
    if not os.environ.get("PET_DATA_DIR"):
        p.error("PET_DATA_DIR is not set: point it at the root holding glue/RTE and superglue/CB")
    settings = settings_from(args)
    if not settings.precisions:
        p.error("--precisions: name at least one (32-true, bf16-mixed)")
    unknown = set(settings.sections) - set(SECTIONS)
    if unknown:
        p.error(f"--sections: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    others = _names(args.ab_sides)
    if any(side not in ("plain", "trainer") for side in others):
        p.error(f"--ab-sides {args.ab_sides}: choose from plain, trainer")
    torch.set_num_threads(settings.threads)
    quiet_libraries()

    began = time.perf_counter()
    print(f"pet_lightning benchmark: {settings.backbone}, batch {settings.batch_size}, max length "
          f"{settings.max_length}, {settings.accelerator}, {settings.threads} threads, precisions "
          f"{', '.join(settings.precisions)}")
    figures: dict[str, Any] = {"settings": asdict(settings), "section_s": {}}
    if settings.accelerator == "cpu":
        figures["cpu_bf16_slowdown"] = cpu_bf16_slowdown()
    figures["device"] = device_identity(settings.accelerator)
    targets: list[report_tables.Target] = []
    sections = settings.sections
    work = Workload(settings) if {"strategies", "ab"} & set(sections) else None

    def timed(name: str, started: float) -> None:
        figures["section_s"][name] = time.perf_counter() - started
        progress(f"section {name}: {figures['section_s'][name]:.0f} s")

    ours: dict[str, Any] = {}
    wanted = [row for row in STRATEGY_ROWS if not settings.strategies or row[1] in settings.strategies
              or row[0] in settings.strategies]
    runnable = [row for row in wanted if row[1] in STRATEGIES]
    if "strategies" in sections and work is not None:
        started = time.perf_counter()
        ours = run_strategies(settings, work, runnable)
        timed("strategies", started)

    ab_results = []
    if "ab" in sections and work is not None:
        started = time.perf_counter()
        for precision in settings.precisions:
            for method in settings.ab_methods:
                if method in STRATEGIES:
                    ab_results.append(run_ab(settings, work, method, precision, others))
                    ratios = ", ".join(f"{k} {v}" for k, v in ab_results[-1].ratios.items())
                    progress(f"A/B {method} {precision}: {ratios}")
        timed("ab", started)

    e2e_results = []
    if "e2e" in sections:
        started = time.perf_counter()
        e2e_results = run_end_to_end(settings)
        timed("e2e", started)

    cache = scaling = None
    if "cache" in sections and "frozen" in STRATEGIES:
        started = time.perf_counter()
        cache = run_cache(settings)
        timed("cache", started)
    if "scaling" in sections:
        started = time.perf_counter()
        scaling = run_scaling(settings)
        timed("scaling", started)

    # Memory passes last: on CPU, RSS growth of one short run each, with freed memory returned to the OS.
    memory_note = "peak MB: peak allocated CUDA memory"
    if settings.accelerator == "cpu" and ours and work is not None:
        exact = exact_rss_mode()
        for result in ours.values():
            result.peak_mb = None  # timed runs reuse each other's freed memory: not comparable
        memory_pass(settings, work, runnable, ours)
        memory_note = "peak MB: process RSS growth during a 2-step run" + ("" if exact else " (approximate)")

    if "strategies" in sections:
        targets += report_tables.strategies_table(settings, wanted, ours, memory_note)
    if ab_results or "ab" in sections:
        unregistered = [m for m in settings.ab_methods if m not in STRATEGIES]
        targets += report_tables.ab_tables(settings, ab_results, unregistered)
    if e2e_results:
        targets += report_tables.e2e_table(settings, e2e_results)
    if cache is not None:
        targets += report_tables.cache_table(cache)
    if scaling is not None:
        report_tables.scaling_table(settings, scaling)
    figures.update({
        "strategies": {k: asdict(v) for k, v in ours.items()},
        "ab": [r.as_dict() for r in ab_results],
        "e2e": [r.as_dict() for r in e2e_results],
        "cache": cache, "scaling": scaling, "memory_note": memory_note,
    })
    if targets:
        report_tables.targets_table(targets)
    figures["targets"] = targets
    figures["wall_s"] = time.perf_counter() - began
    print(f"\nwall time {figures['wall_s']:.0f} s (" + ", ".join(
        f"{k} {v:.0f} s" for k, v in figures["section_s"].items()) + ")")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return figures


if __name__ == "__main__":
    main()
