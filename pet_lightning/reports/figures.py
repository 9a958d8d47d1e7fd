"""Figures of a report: per-seed distributions (Figure 4 shape) and score densities (Figure 5 shape)."""

from __future__ import annotations

import math
from pathlib import Path

from scipy import stats

from pet_lightning.reports.cells import Report
from pet_lightning.reports.stats import mean_of, std_of


def plot_seed_distributions(report: Report, path: Path) -> Path:
    """Figure 4 shape: each seed's score per method and task, the mean as a bar and ± std as error bars."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(report.tasks), figsize=(max(4.0, 1.1 * len(report.methods)) * len(report.tasks),
                                                            3.6), squeeze=False)
    for ax, task in zip(axes[0], report.tasks):
        for x, method in enumerate(report.methods):
            cell = report.cell(task, method)
            if cell is None:
                continue
            values = cell.values
            offsets = [(i - (len(values) - 1) / 2) * min(0.05, 0.5 / max(1, len(values))) for i in range(len(values))]
            ax.scatter([x + o for o in offsets], values, s=14, alpha=0.6, color=f"C{x}")
            mean, std = mean_of(values), std_of(values)
            ax.errorbar(x, mean, yerr=0 if math.isnan(std) else std, fmt="_", markersize=22, capsize=6,
                        color="black", elinewidth=1.2)
        ax.set_xticks(range(len(report.methods)), report.methods, rotation=30)
        ax.set_title(f"{task} ({report.headline[task]})")
        ax.set_ylabel("score x 100")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Scores per seed (bar: mean, whiskers: ± std)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_densities(report: Report, path: Path) -> Path:
    """Figure 5 shape: a Gaussian kernel density of the scores of each method, per task."""
    import numpy as np

    plt = pyplot()
    fig, axes = plt.subplots(1, len(report.tasks), figsize=(4.5 * len(report.tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], report.tasks):
        everything = [v for m in report.methods if report.cell(task, m) for v in report.cell(task, m).values]
        low, high = min(everything), max(everything)
        pad = max(1.0, 0.25 * (high - low))
        grid = np.linspace(low - pad, high + pad, 300)
        for i, method in enumerate(report.methods):
            cell = report.cell(task, method)
            if cell is None:
                continue
            values = np.array(cell.values)
            if len(values) >= 2 and values.std() > 0:
                ax.plot(grid, stats.gaussian_kde(values)(grid), color=f"C{i}", label=method)
            else:
                # A single value or identical values have no density: mark where they are.
                ax.axvline(float(values.mean()), color=f"C{i}", linestyle="--", label=f"{method} (no spread)")
            ax.plot(values, np.zeros_like(values), "|", color=f"C{i}", markersize=10)
        ax.set_title(f"{task} ({report.headline[task]})")
        ax.set_xlabel("score x 100")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
