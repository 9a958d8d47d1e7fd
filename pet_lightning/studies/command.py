"""``python cli.py study <study file> [--scale cpu|paper]``: run (or resume) a study's sweep, then write its report.

One command per paper table: the sweep engine runs every missing run of the chosen scale (finished runs are never
redone, so an interrupted study resumes), then the study's layout writes the tables, figures and findings to
``--report-out`` (default: ``<the sweep's out>/report``). Engine flags are those of ``cli.py sweep``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pet_lightning.studies import write_study_report
from pet_lightning.sweeps.cost import add_plan_flags, plan_command
from pet_lightning.sweeps.plan import SweepConfig
from pet_lightning.sweeps.records import SweepError, load_results
from pet_lightning.sweeps.runner import ENGINE_FLAGS, run_sweep


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py study", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="study file, e.g. configs/studies/transferability_table1.yaml")
    parser.add_argument("--scale", help="a scale the study file defines: cpu, paper, or one it adds (EH-FT: "
                        "paper_leaky); default: its default_scale")
    parser.add_argument("--report-out", help="report folder (default: <out>/report)")
    parser.add_argument("--report-only", action="store_true", help="write the report of the runs finished so far")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of the findings")
    parser.add_argument("--address", help="Ray cluster: 'auto' or '<head>:6379' (default: a local Ray instance)")
    for key, kind in ENGINE_FLAGS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, help=f"overrides the study file's {key}")
    add_plan_flags(parser)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        sweep = SweepConfig.from_file(args.config, args.scale)
        if sweep.study is None:
            raise SweepError(f"{args.config} names no study (a plain sweep file): run it with cli.py sweep")
        code = 0
        overrides = {key: getattr(args, key) for key in ENGINE_FLAGS if getattr(args, key) is not None}
        if args.plan:
            return plan_command(sweep, args, overrides)
        if not args.report_only:
            code = run_sweep(args.config, overrides=overrides, address=args.address, scale=args.scale)
        out = Path(args.report_out or Path(sweep.out) / "report")
        if args.report_only and not sweep.results_path.is_file():
            raise SweepError(f"no run of this study has finished at scale {sweep.scale} ({sweep.results_path} does "
                             f"not exist): run it first, python cli.py study {args.config} --scale {sweep.scale}")
        paths = write_study_report(load_results(sweep.results_path), out, args.alpha)
    except (SweepError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((out / "report.md").read_text(encoding="utf-8"))
    print(f"report: {paths['report']}")
    if code:
        print("note: some runs did not finish (see above); the report covers the finished ones", file=sys.stderr)
    return code
