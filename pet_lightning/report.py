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
* ``report.md``: all of the above in one page. Runs under the leaky ``standard`` protocol are flagged everywhere.

Scores are the reported split's headline metric at the checkpoint chosen on the selection split, × 100.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from pet_lightning.sweep import SweepError, load_results
from pet_lightning.tasks import get_task

GROUPS = ("low", "medium", "high")
GROUP_LABELS = {"low": "low (<1k)", "medium": "medium (<10k)", "high": "high (>=10k)"}
SEED_MODE_LABELS = {"both": "global", "init": "weight init", "order": "data order"}
UP, DOWN = "↑", "↓"
BETTER, SAME, WORSE = "↗", "→", "↘"
LEAKY_MARK = "†"


def welch_t_test(a: Sequence[float], b: Sequence[float], alternative: str = "two-sided") -> tuple[float, float, float]:
    """Welch's unequal-variance t-test of mean(a) vs mean(b): ``(t, degrees of freedom, p)``.

    ``alternative``: ``greater`` (mean(a) > mean(b)), ``less`` or ``two-sided``. Needs two or more values on each
    side; with no variance at all the test is undefined and every figure is NaN.
    """
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative={alternative!r}: use greater, less or two-sided")
    n_a, n_b = len(a), len(b)
    if n_a < 2 or n_b < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values per side (got {n_a} and {n_b}): run more seeds")
    mean_a, mean_b = sum(a) / n_a, sum(b) / n_b
    var_a = sum((x - mean_a) ** 2 for x in a) / (n_a - 1)
    var_b = sum((x - mean_b) ** 2 for x in b) / (n_b - 1)
    se_a, se_b = var_a / n_a, var_b / n_b
    if se_a + se_b == 0:
        return math.nan, math.nan, math.nan
    t = (mean_a - mean_b) / math.sqrt(se_a + se_b)
    df = (se_a + se_b) ** 2 / (se_a**2 / (n_a - 1) + se_b**2 / (n_b - 1))
    if alternative == "greater":
        p = float(stats.t.sf(t, df))
    elif alternative == "less":
        p = float(stats.t.cdf(t, df))
    else:
        p = float(2 * stats.t.sf(abs(t), df))
    return t, df, p


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _std(values: Sequence[float]) -> float:
    # Sample standard deviation (ddof=1), as across-seed spreads are usually reported.
    if len(values) < 2:
        return math.nan
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def significance(scores: Sequence[float], baseline: Sequence[float], alpha: float) -> tuple[str, float, float]:
    """``(mark, p_greater, p_less)``: ↑ / ↓ where the one-tailed Welch test has p < alpha, else ``""``."""
    if len(scores) < 2 or len(baseline) < 2:
        return "", math.nan, math.nan
    p_greater = welch_t_test(scores, baseline, "greater")[2]
    p_less = welch_t_test(scores, baseline, "less")[2]
    mark = UP if p_greater < alpha else DOWN if p_less < alpha else ""
    return mark, p_greater, p_less


@dataclass
class Cell:
    """The runs of one (task, method, seed mode)."""

    scores: dict[int, float] = field(default_factory=dict)  # seed -> score x 100
    steps: list[int] = field(default_factory=list)
    best_steps: list[int] = field(default_factory=list)
    leaky: bool = False

    @property
    def values(self) -> list[float]:
        return [self.scores[seed] for seed in sorted(self.scores)]


@dataclass
class Report:
    """Everything the tables and plots are made of."""

    tasks: list[str]
    methods: list[str]
    baseline: str
    alpha: float
    cells: dict[tuple[str, str, str], Cell]
    headline: dict[str, str]
    leaky_runs: int

    def cell(self, task: str, method: str, mode: str = "both") -> Cell | None:
        return self.cells.get((task, method, mode))


def build_report(records: list[dict[str, Any]], baseline: str = "full", alpha: float = 0.05) -> Report:
    if not records:
        raise SweepError("the results file has no finished runs yet: run the sweep first")
    tasks: list[str] = []
    methods: list[str] = []
    cells: dict[tuple[str, str, str], Cell] = defaultdict(Cell)
    headline: dict[str, str] = {}
    leaky_runs = 0
    for record in records:
        task, method, mode = record["task"], record["method"], record.get("seed_mode", "both")
        if task not in tasks:
            tasks.append(task)
        if method not in methods:
            methods.append(method)
        headline[task] = record["headline"]
        cell = cells[(task, method, mode)]
        cell.scores[int(record["seed"])] = 100.0 * float(record["score"])
        cell.steps.append(int(record["steps"]))
        if record.get("best_step") is not None:
            cell.best_steps.append(int(record["best_step"]))
        if record.get("leaky"):
            cell.leaky = True
            leaky_runs += 1
    # Baseline first, then the order of first appearance; tasks by resource group, then name.
    if baseline in methods:
        methods.remove(baseline)
        methods.insert(0, baseline)
    tasks.sort(key=lambda t: (GROUPS.index(get_task(t).resource_group), t))
    return Report(tasks, methods, baseline, alpha, dict(cells), headline, leaky_runs)


# ----------------------------------------------------------------------------------------------------- tables
def _fmt(value: float, digits: int = 1) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def table2(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """Markdown header, Markdown rows and CSV rows of the mean ± std table with significance marks."""
    header = ["task", "group", "metric", *report.methods]
    rows, csv_rows = [], []
    group_means: dict[tuple[str, str], list[float]] = defaultdict(list)
    base = report.baseline
    for task in report.tasks:
        group = get_task(task).resource_group
        row = [task, group, report.headline[task]]
        baseline_cell = report.cell(task, base)
        for method in report.methods:
            cell = report.cell(task, method)
            if cell is None:
                row.append("–")
                continue
            values = cell.values
            mark, p_greater, p_less = ("", math.nan, math.nan)
            if method != base and baseline_cell is not None:
                mark, p_greater, p_less = significance(values, baseline_cell.values, report.alpha)
            mean, std = _mean(values), _std(values)
            group_means[(group, method)].append(mean)
            row.append(f"{_fmt(mean)} ± {_fmt(std)}{mark}{LEAKY_MARK if cell.leaky else ''}")
            csv_rows.append(
                {"task": task, "group": group, "metric": report.headline[task], "method": method, "n": len(values),
                 "mean": mean, "std": std, "max": max(values), "p_greater_than_baseline": p_greater,
                 "p_less_than_baseline": p_less, "mark": mark, "leaky": cell.leaky}
            )
        rows.append(row)
    for group in GROUPS:
        if not any(get_task(t).resource_group == group for t in report.tasks):
            continue
        row = [f"avg {GROUP_LABELS[group]}", group, ""]
        for method in report.methods:
            means = group_means.get((group, method), [])
            n_tasks = sum(1 for t in report.tasks if get_task(t).resource_group == group)
            row.append(_fmt(_mean(means)) if len(means) == n_tasks else "–")
            if len(means) == n_tasks:
                csv_rows.append({"task": f"avg_{group}", "group": group, "metric": "", "method": method,
                                 "n": len(means), "mean": _mean(means)})
        rows.append(row)
    return header, rows, csv_rows


def _group_seed_averages(report: Report, method: str, group: str) -> list[float]:
    """Per-seed average over the group's tasks (seeds present in every task of the group)."""
    tasks = [t for t in report.tasks if get_task(t).resource_group == group]
    cells = [report.cell(t, method) for t in tasks]
    if not tasks or any(cell is None for cell in cells):
        return []
    seeds = set.intersection(*(set(cell.scores) for cell in cells))
    return [_mean([cell.scores[seed] for cell in cells]) for seed in sorted(seeds)]


def table3(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    groups = [g for g in GROUPS if any(get_task(t).resource_group == g for t in report.tasks)]
    header = ["method", *(GROUP_LABELS[g] for g in groups)]
    rows, csv_rows = [], []
    for method in report.methods:
        if method == report.baseline:
            continue
        row = [method]
        for group in groups:
            scores = _group_seed_averages(report, method, group)
            baseline = _group_seed_averages(report, report.baseline, group)
            if len(scores) < 2 or len(baseline) < 2:
                row.append("?")
                continue
            mark, p_greater, p_less = significance(scores, baseline, report.alpha)
            trend = BETTER if mark == UP else WORSE if mark == DOWN else SAME
            row.append(trend)
            csv_rows.append({"method": method, "group": group, "trend": trend, "mean": _mean(scores),
                             "baseline_mean": _mean(baseline), "p_greater_than_baseline": p_greater,
                             "p_less_than_baseline": p_less, "seeds": len(scores)})
        rows.append(row)
    return header, rows, csv_rows


def table4(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    modes = [m for m in SEED_MODE_LABELS if any(key[2] == m for key in report.cells)]
    header = ["task", "method", *(f"std {SEED_MODE_LABELS[m]}" for m in modes)]
    rows, csv_rows = [], []
    for task in report.tasks:
        for method in report.methods:
            present = {m: report.cell(task, method, m) for m in modes}
            if all(cell is None for cell in present.values()):
                continue
            row = [task, method]
            for mode, cell in present.items():
                std = _std(cell.values) if cell else math.nan
                row.append(f"{_fmt(std, 2)} (n={len(cell.values)})" if cell else "–")
                if cell:
                    csv_rows.append({"task": task, "method": method, "seed_mode": mode, "source":
                                     SEED_MODE_LABELS[mode], "n": len(cell.values), "std": std,
                                     "mean": _mean(cell.values)})
            rows.append(row)
    return header, rows, csv_rows


def upper_bound(report: Report) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    header = ["task", "method", "seeds", "mean", "max (upper bound)", "max - mean", "train steps",
              "steps at selected ckpt"]
    rows, csv_rows = [], []
    for task in report.tasks:
        for method in report.methods:
            cell = report.cell(task, method)
            if cell is None:
                continue
            values = cell.values
            mean, top = _mean(values), max(values)
            steps, best = _mean(cell.steps), _mean(cell.best_steps)
            rows.append([task, method, str(len(values)), _fmt(mean), _fmt(top), _fmt(top - mean), _fmt(steps, 0),
                         _fmt(best, 0)])
            csv_rows.append({"task": task, "method": method, "n": len(values), "mean": mean, "max": top,
                             "gap": top - mean, "steps_mean": steps, "best_step_mean": best, "leaky": cell.leaky})
    return header, rows, csv_rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


# ------------------------------------------------------------------------------------------------------ plots
def plot_seed_distributions(report: Report, path: Path) -> Path:
    """Figure 4 shape: each seed's score per method and task, the mean as a bar and ± std as error bars."""
    plt = _pyplot()
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
            mean, std = _mean(values), _std(values)
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

    plt = _pyplot()
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------------------------------ output
def write_report(records: list[dict[str, Any]], out: str | Path, baseline: str = "full",
                 alpha: float = 0.05) -> dict[str, Path]:
    """Write every table (Markdown + CSV), both figures and ``report.md``; returns the paths by name."""
    report = build_report(records, baseline, alpha)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    sections = []
    if report.leaky_runs:
        sections.append(
            f"> **LEAKY ({LEAKY_MARK})**: {report.leaky_runs} run(s) used protocol `standard`, which selects and "
            "reports on the same dev set; their figures are inflated. Use `dev_split` or `train_holdout`.\n"
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
        _write_csv(out / f"{name}.csv", csv_rows)
        paths[name] = out / f"{name}.md"
        paths[f"{name}_csv"] = out / f"{name}.csv"
        sections.append(f"## {titles[name]}\n\n{text}")
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
    parser.add_argument("--wandb-project", help="also log the figures and tables to this W&B project")
    parser.add_argument("--wandb-run", help="W&B run id to log into (resumed if it exists)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not 0 < args.alpha < 1:
            raise ValueError(f"--alpha={args.alpha}: use a significance level between 0 and 1")
        paths = write_report(load_results(*args.results), args.out, args.baseline, args.alpha)
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
