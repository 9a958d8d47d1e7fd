"""The generic report of a multi-seed sweep: tables and plots of every (task, method) cell against a baseline.

The tables follow the shapes the "Revisiting Parameter-Efficient Tuning" study made common, under the file names it
gave them. ``python cli.py report runs/sweeps/<name>/results.jsonl --out runs/reports/<name>`` (records of a plain
sweep; a study's records get their study's layout, :mod:`pet_lightning.studies.command`) writes:

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

import csv
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
    group_trend_table,
    markdown_table,
    mean_std_table,
    seed_source_table,
    upper_bound_table,
    write_csv,
)

# File name -> the table written under it (the names of the study whose shapes these are).
TABLES = {"table2": mean_std_table, "table3": group_trend_table, "table4": seed_source_table,
          "upper_bound": upper_bound_table}


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
    for name, maker in TABLES.items():
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
    for name in TABLES:
        with open(paths[f"{name}_csv"], encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if len(rows) > 1:
            payload[name] = wandb.Table(columns=rows[0], data=rows[1:])
    run.log(payload)
