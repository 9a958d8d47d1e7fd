"""``python cli.py study`` and ``python cli.py report``: the commands that know studies.

``study <study file> [--scale cpu|paper]`` runs (or resumes) a study's sweep, then writes its report. One command
per paper table: the sweep engine runs every missing run of the chosen scale (finished runs are never redone, so an
interrupted study resumes), then the study's layout writes the tables, figures and findings to ``--report-out``
(default: ``<the sweep's out>/report``). Engine flags are those of ``cli.py sweep``.

``report <results.jsonl> --out <dir>`` writes the report of a sweep's records: the study's own layout when they come
from a study file (``--layout auto``), else the generic multi-seed tables of :mod:`pet_lightning.reports.page`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pet_lightning.errors import PetLightningError, StudyError
from pet_lightning.reports.page import log_to_wandb, write_report
from pet_lightning.studies.layouts import check_layout, study_of, write_study_report
from pet_lightning.sweeps.cost import add_plan_flags, plan_command
from pet_lightning.sweeps.plan import SweepConfig
from pet_lightning.sweeps.records import load_results
from pet_lightning.sweeps.runner import ENGINE_FLAGS, run_sweep

STUDY_HELP = ("``python cli.py study <study file> [--scale cpu|paper]``: run (or resume) a study's sweep, then write "
              "its report.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py study", description=STUDY_HELP)
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


def study_config(path: str, scale: str | None) -> SweepConfig:
    """One scale of a study file; a plain sweep file, or a study without a report layout, is refused."""
    sweep = SweepConfig.from_file(path, scale)
    if sweep.study is None:
        raise StudyError(f"{path} names no study (a plain sweep file): run it with cli.py sweep")
    check_layout(sweep.study)
    return sweep


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        sweep = study_config(args.config, args.scale)
        code = 0
        overrides = {key: getattr(args, key) for key in ENGINE_FLAGS if getattr(args, key) is not None}
        if args.plan:
            return plan_command(sweep, args, overrides)
        if not args.report_only:
            code = run_sweep(args.config, overrides=overrides, address=args.address, scale=args.scale)
        out = Path(args.report_out or Path(sweep.out) / "report")
        if args.report_only and not sweep.results_path.is_file():
            raise StudyError(f"no run of this study has finished at scale {sweep.scale} ({sweep.results_path} does "
                             f"not exist): run it first, python cli.py study {args.config} --scale {sweep.scale}")
        paths = write_study_report(load_results(sweep.results_path), out, args.alpha)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((out / "report.md").read_text(encoding="utf-8"))
    print(f"report: {paths['report']}")
    if code:
        print("note: some runs did not finish (see above); the report covers the finished ones", file=sys.stderr)
    return code


def build_report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py report", description="Tables and plots of a sweep's results.")
    parser.add_argument("results", nargs="+", help="results.jsonl file(s) written by `cli.py sweep`")
    parser.add_argument("--out", required=True, help="output folder for Markdown, CSV and PNG files")
    parser.add_argument("--baseline", default="full", help="method the t-tests compare against (default: full)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default: 0.05)")
    parser.add_argument("--split-configs", action="store_true",
                        help="report records of different configs / protocols of one method as separate labelled "
                             "columns instead of failing")
    parser.add_argument("--layout", choices=("auto", "sweep"), default="auto",
                        help="auto: a study's own tables when the records come from a study file (default); "
                             "sweep: the generic multi-seed tables")
    parser.add_argument("--wandb-project", help="also log the figures and tables to this W&B project")
    parser.add_argument("--wandb-run", help="W&B run id to log into (resumed if it exists)")
    return parser


def report_main(argv: list[str]) -> int:
    args = build_report_parser().parse_args(argv)
    try:
        if not 0 < args.alpha < 1:
            raise PetLightningError(f"--alpha={args.alpha}: use a significance level between 0 and 1")
        records = load_results(*args.results)
        study = None if args.layout == "sweep" else study_of(records)
        if study is not None:
            # Records of a study file: its paper's tables, published figures and findings.
            paths = write_study_report(records, args.out, args.alpha)
            print((Path(args.out) / "report.md").read_text(encoding="utf-8"))
            for name, path in paths.items():
                print(f"{name}: {path}")
            return 0
        paths = write_report(records, args.out, args.baseline, args.alpha, args.split_configs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.wandb_project or args.wandb_run:
        import wandb

        run = wandb.init(project=args.wandb_project or "pet-lightning", id=args.wandb_run, resume="allow",
                         job_type="report", dir=args.out)
        log_to_wandb(paths, run)
        run.finish()
    print((Path(args.out) / "table2.md").read_text(encoding="utf-8"))
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
