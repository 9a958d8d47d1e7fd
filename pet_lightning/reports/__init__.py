"""Reports of multi-seed sweeps: cells of runs -> statistics -> tables and figures -> one page.

``python cli.py report <results.jsonl> --out <dir>`` (:func:`pet_lightning.reports.page.main`).
"""

from pet_lightning.reports.cells import Cell, Report, build_report
from pet_lightning.reports.page import log_to_wandb, main, write_report
from pet_lightning.reports.stats import significance, welch_t_test
from pet_lightning.reports.tables import markdown_table, table2, table3, table4, upper_bound

__all__ = [
    "Cell",
    "Report",
    "build_report",
    "log_to_wandb",
    "main",
    "markdown_table",
    "significance",
    "table2",
    "table3",
    "table4",
    "upper_bound",
    "welch_t_test",
    "write_report",
]
