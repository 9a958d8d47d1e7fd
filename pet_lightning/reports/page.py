"""Tables and plots of a multi-seed sweep, in the shapes of the "Revisiting Parameter-Efficient Tuning" study.

``python cli.py report runs/sweeps/<name>/results.jsonl --out runs/reports/<name>`` writes:

* ``table2.md`` / ``table2.csv``: mean ± std of the reported headline metric per task and method, a one-tailed
  Welch t-test of each method against full fine-tuning (↑ / ↓ where p < alpha), and averages over the low
  (< 1k training examples), medium (< 10k) and high resource groups of the task table;
* ``table3.md`` / ``table3.csv``: ↗ (better), → (no significant difference), ↘ (worse) than full fine-tuning per
  method and resource group (Welch test on the per-seed averages over the group's tasks);
* ``table4.md`` / ``table4.csv``: standard deviation across seeds when both seeds vary (global), only the
  weight-init seed varies, or only the data-order seed varies;
* ``upper_bound.md`` / ``upper_bound.csv``: the mean next to the maximum over seeds (what a "best seed" paper would
  print) and the number of training steps (total and at the selected checkpoint);
* ``figure4_seed_distributions.png`` (every seed's score with mean and ± std) and ``figure5_densities.png``
  (density of the scores per method);
* ``report.md``: all of the above in one page, with the resolution of the reported split (examples, points per
  example, a bootstrap interval over examples per cell: :mod:`pet_lightning.reports.examples`). Runs under the
  leaky ``standard`` protocol are flagged everywhere.

Scores are the reported split's headline metric at the checkpoint chosen on the selection split, × 100.
"""


from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from pet_lightning.reports.cells import LEAKY_MARK, build_report
from pet_lightning.reports.examples import resolution_section
from pet_lightning.reports.figures import plot_densities, plot_seed_distributions
from pet_lightning.reports.stats import DOWN, UP
from pet_lightning.reports.tables import (
    BETTER,
    SAME,
    WORSE,
    markdown_table,
    table2,
    table3,
    table4,
    upper_bound,
    write_csv,
)
from pet_lightning.studies import study_of, write_study_report
from pet_lightning.sweeps.records import SweepError, load_results


def write_report(records: list[dict[str, Any]], out: str | Path, baseline: str = "full",
                 alpha: float = 0.05, split_configs: bool = False) -> dict[str, Path]:
    """Write every table (Markdown + CSV), both figures and ``report.md``; returns the paths by name."""
    report = build_report(records, baseline, alpha, split_configs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    sections = []
    if report.leaky_runs:
        sections.append(
            f"> **LEAKY ({LEAKY_MARK})**: {report.leaky_runs} run(s) used protocol `standard`, which selects and "
            "reports on the same dev set; their figures are inflated. Use `dev_split` or `train_holdout`.\n"
        )
    if report.failed_runs:
        sections.append(
            f"> **{len(report.failed_runs)} failed run(s)** are left out: {', '.join(report.failed_runs)}.\n"
        )
    moved = [t for t in report.tasks if report.groups[t] != report.official_groups[t]]
    if moved:
        sections.append(
            "> Resource groups follow the examples the runs trained on: "
            + ", ".join(f"{t} {report.groups[t]} (officially {report.official_groups[t]})" for t in moved)
            + ".\n"
        )
    if report.baseline not in report.methods:
        sections.append(f"> No `{report.baseline}` runs: the significance marks against it are left out.\n")
    titles = {
        "table2": f"Table 2: mean ± std over seeds; {UP}/{DOWN}: one-tailed Welch t-test against "
        f"`{report.baseline}` with p < {alpha}",
        "table3": f"Table 3: {BETTER} better, {SAME} no significant difference, {WORSE} worse than "
        f"`{report.baseline}`, per resource group",
        "table4": "Table 4: standard deviation across seeds by source of randomness",
        "upper_bound": "Mean vs. upper bound (max over seeds) and training steps",
    }
    for name, maker in (("table2", table2), ("table3", table3), ("table4", table4), ("upper_bound", upper_bound)):
        header, rows, csv_rows = maker(report)
        text = markdown_table(header, rows) if rows else "(not enough runs for this table)\n"
        (out / f"{name}.md").write_text(text, encoding="utf-8")
        write_csv(out / f"{name}.csv", csv_rows)
        paths[name] = out / f"{name}.md"
        paths[f"{name}_csv"] = out / f"{name}.csv"
        sections.append(f"## {titles[name]}\n\n{text}")
    # Per-example predictions (runs since issue 34): what one example is worth, intervals over examples.
    sections.append(resolution_section([r for r in records if r.get("status", "ok") == "ok"],
                                       metrics=report.headline) + "\n")
    paths["figure4"] = plot_seed_distributions(report, out / "figure4_seed_distributions.png")
    paths["figure5"] = plot_densities(report, out / "figure5_densities.png")
    sections.append("## Figures\n\n![seed distributions](figure4_seed_distributions.png)\n\n"
                    "![densities](figure5_densities.png)\n")
    runs = len(records)
    intro = (f"# Multi-seed report\n\n{runs} runs, tasks {', '.join(report.tasks)}, methods "
             f"{', '.join(report.methods)}. Scores: the reported split's headline metric x 100 at the checkpoint "
             "selected on the selection split.\n")
    (out / "report.md").write_text("\n".join([intro, *sections]), encoding="utf-8")
    paths["report"] = out / "report.md"
    return paths


def log_to_wandb(paths: dict[str, Path], run) -> None:
    """Log both figures and every CSV table to an open W&B run."""
    import wandb

    payload: dict[str, Any] = {name: wandb.Image(str(paths[name])) for name in ("figure4", "figure5")}
    for name in ("table2", "table3", "table4", "upper_bound"):
        with open(paths[f"{name}_csv"], encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if len(rows) > 1:
            payload[name] = wandb.Table(columns=rows[0], data=rows[1:])
    run.log(payload)


def build_parser() -> argparse.ArgumentParser:
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


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not 0 < args.alpha < 1:
            raise ValueError(f"--alpha={args.alpha}: use a significance level between 0 and 1")
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
    except (SweepError, ValueError) as err:
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
