"""Is a per-step ratio a property of the code or of one build of the sides? Fresh builds of one cell, compared.

    python -m benchmarks.build_variance --method full --precision 32-true --builds 3 --blocks 12 --json out.json

Why: two runs of ``python -m benchmarks.run`` on one commit disagreed on 2 of 26 ratios (``docs/performance.md``),
more often than two 95% intervals of one quantity do by chance. The A/B intervals are over blocks of one build of
the three sides (model, optimizer and loop thread of each, made once per cell), so whatever a build fixes for its
lifetime (where its tensors landed, its thread's allocator arena and OpenMP team) is one draw that every block
shares, and no interval over those blocks can see it. Here the same cell is built ``--builds`` times in one
process, each build timed like the benchmark's A/B section with a fixed block count (no precision rule), and for
each comparison a one-way ANOVA over builds of the per-pair ratios (``scipy.stats.f_oneway``) asks whether builds
differ by more than their blocks do. Run it twice (two processes) to see the process-level part as well, then
read the runs together:

    python -m benchmarks.build_variance --combine process1.json process2.json

``--by-position run.json`` reads a ``benchmarks.run --json`` file instead and prints how noisy each block position
within a build is (why each build's first blocks settle, untimed: ``Settings.ab_settle_blocks``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import Settings, Workload, progress, quiet_libraries
from benchmarks.intervals import RatioInterval, over_builds, pair_ratios, ratio_interval, saved_per_build


def between_builds(ratios: list[list[float]]) -> dict[str, Any]:
    """Per-build mean ratio with its interval, the pooled interval (as if one build), and the one-way ANOVA of the
    per-pair ratios over builds: ``p`` small means the builds' means differ beyond their block-to-block noise."""
    from scipy import stats

    if len(ratios) < 2 or any(len(r) < 2 for r in ratios):
        raise ValueError("between_builds needs at least two builds of at least two pairs each")
    anova = stats.f_oneway(*ratios)
    means = [statistics.fmean(r) for r in ratios]
    return {
        "builds": [ratio_interval(r).as_dict() for r in ratios],
        "pooled": ratio_interval([x for r in ratios for x in r]).as_dict(),
        # The interval that holds where builds differ: builds, not blocks, are the independent draws.
        "over_build_means": over_builds(ratios).as_dict(),
        "spread_of_build_means": max(means) - min(means),
        "f": float(anova.statistic), "p": float(anova.pvalue),
    }


def between_processes(runs: list[list[list[float]]]) -> dict[str, Any]:
    """``runs[process][build]``: per-pair ratios. :func:`between_builds` over every build of every process, each
    process's pooled interval, and the one-way ANOVA of the pooled pairs over processes (it ignores the pairs'
    clustering in builds, so its ``p`` errs small: a large one is no artefact of that)."""
    from scipy import stats

    if len(runs) < 2:
        raise ValueError("between_processes needs at least two runs (processes)")
    pooled = [[x for build in run for x in build] for run in runs]
    return {
        "builds": between_builds([build for run in runs for build in run]),
        "processes": [ratio_interval(p).as_dict() for p in pooled],
        "p": float(stats.f_oneway(*pooled).pvalue),
    }


def combine(paths: list[str]) -> dict[str, Any]:
    """Saved runs (``--json``) of one cell, each from its own process, read together by :func:`between_processes`."""
    runs = [json.loads(Path(path).read_text()) for path in paths]
    cells = {(r["method"], r["precision"]) for r in runs}
    if len(cells) != 1:
        raise ValueError(f"--combine: the runs time different cells {sorted(cells)}; combine runs of one method and "
                         "precision")
    others = [k for k in runs[0]["step_s"][0] if k != "ours"]
    return {"method": runs[0]["method"], "precision": runs[0]["precision"], "runs": list(paths), "comparisons": {
        other: between_processes([[pair_ratios(s["ours"], s[other]) for s in r["step_s"]] for r in runs])
        for other in others}}


def noise_by_position(figures: dict[str, Any]) -> dict[int, float]:
    """Mean absolute deviation of each block pair's ratio from its cell's median ratio, by the block's position in
    its build (0: the first kept block), over every cell and comparison of one ``benchmarks.run --json`` file
    (builds as saved, or the one build of older files). Noisy first positions mean the sides have not settled."""
    deviations: dict[int, list[float]] = {}
    for cell in figures.get("ab", []):
        for other in cell["ratios"]:
            per_build = saved_per_build(cell, other)
            median = statistics.median(r for build in per_build for r in build)
            for build in per_build:
                for position, ratio in enumerate(build):
                    deviations.setdefault(position, []).append(abs(ratio - median))
    if not deviations:
        raise ValueError("no A/B cells in these figures: write them with python -m benchmarks.run --json <file>")
    return {position: statistics.fmean(d) for position, d in sorted(deviations.items())}


def run(settings: Settings, method: str, precision: str, builds: int,
        others: tuple[str, ...] = ("plain", "trainer")) -> dict[str, Any]:
    """``builds`` fresh builds of one cell, each timed in ``settings.ab_blocks`` interleaved blocks."""
    from benchmarks.interleave import run_ab

    fixed = replace(settings, ab_builds=1, ab_min_blocks=settings.ab_blocks, ab_half_width=0.0)
    work = Workload(fixed)
    step_s = []
    for build in range(builds):
        result = run_ab(fixed, work, method, precision, others)
        step_s.append(result.step_s)
        progress(f"build {build}: " + ", ".join(f"{k} {v}" for k, v in result.ratios.items()))
    comparisons = {other: between_builds([pair_ratios(s["ours"], s[other]) for s in step_s]) for other in others}
    return {"method": method, "precision": precision, "blocks": fixed.ab_blocks, "step_s": step_s,
            "comparisons": comparisons}


def _main_combine(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    if len(args.combine) < 2:
        p.error("--combine: name at least two saved runs, each from its own process")
    try:
        combined = combine(args.combine)
    except ValueError as error:
        p.error(str(error))
    for other, c in combined["comparisons"].items():
        builds = c["builds"]
        processes = ", ".join(str(RatioInterval.from_dict(x)) for x in c["processes"])
        print(f"{combined['method']} {combined['precision']} ours / {other}: ANOVA over {len(builds['builds'])} "
              f"builds F = {builds['f']:.2f}, p = {builds['p']:.3f}; processes pooled {processes}, ANOVA over "
              f"processes p = {c['p']:.3f}; over build means {RatioInterval.from_dict(builds['over_build_means'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(combined, indent=2))
    return combined


def _main_by_position(p: argparse.ArgumentParser, paths: list[str]) -> dict[str, Any]:
    found = {}
    for path in paths:
        try:
            found[path] = noise_by_position(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as error:
            p.error(f"--by-position {path}: {error}")
        print(f"{path}: mean |ratio - cell median| by block position: " + ", ".join(
            f"{k} {v:.3f}" for k, v in found[path].items()))
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--method", default="full")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--builds", type=int, default=3)
    p.add_argument("--blocks", type=int, default=12, help="timed blocks per build (a whole number of rotations)")
    p.add_argument("--backbone", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                   help="read saved runs (--json) of one cell, one per process, together instead of timing")
    p.add_argument("--by-position", nargs="+", default=None, metavar="JSON",
                   help="read benchmark runs (benchmarks.run --json) and print the block noise by position in a build")
    args = p.parse_args(argv)
    if args.combine:
        return _main_combine(p, args)
    if args.by_position:
        return _main_by_position(p, args.by_position)
    if args.builds < 2 or args.blocks < 2:
        p.error(f"--builds {args.builds} --blocks {args.blocks}: use at least 2 of each")
    quiet_libraries()
    settings = replace(Settings(), ab_blocks=args.blocks, **({"backbone": args.backbone} if args.backbone else {}))
    figures = run(settings, args.method, args.precision, args.builds)
    for other, c in figures["comparisons"].items():
        builds = ", ".join(str(RatioInterval.from_dict(b)) for b in c["builds"])
        pooled = RatioInterval.from_dict(c["pooled"])
        print(f"{args.method} {args.precision} ours / {other}: builds {builds}; pooled {pooled}; "
              f"ANOVA over builds F = {c['f']:.2f}, p = {c['p']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
