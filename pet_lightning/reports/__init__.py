"""Reports of multi-seed sweeps: cells of runs -> statistics -> tables and figures -> one page.

``python cli.py report <results.jsonl> --out <dir>`` writes :func:`~pet_lightning.reports.page.write_report`'s page
for the records of a plain sweep (:mod:`pet_lightning.studies.command` holds the command).
"""

from pet_lightning.reports.cells import Cell, Report, build_report
from pet_lightning.reports.page import log_to_wandb, write_report
from pet_lightning.reports.stats import significance, welch_t_test
from pet_lightning.reports.tables import (
    group_trend_table,
    markdown_table,
    mean_std_table,
    seed_source_table,
    upper_bound_table,
)

__all__ = [
    "Cell",
    "Report",
    "build_report",
    "group_trend_table",
    "log_to_wandb",
    "markdown_table",
    "mean_std_table",
    "seed_source_table",
    "significance",
    "upper_bound_table",
    "welch_t_test",
    "write_report",
]
