"""Report layouts of the "Revisiting Parameter-Efficient Tuning" study (Chen et al., EMNLP 2022).

Table 2 (mean ± std, one-tailed Welch tests against full fine-tuning) and Table 3 (arrows per resource group) come
from the same runs (study file ``revisiting_table2``); Table 4 (std by source of randomness) from
``revisiting_table4``; Figures 3, 4, 5 and the iterations finding from their own study files. Methods are named
``full``, ``adapter``, ``prefix``, ``lora``, ``bitfit`` as in ``configs/revisiting/``. Findings test the paper's
claims on our numbers and say which reproduce.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pet_lightning.reports.cells import GROUP_LABELS, build_report
from pet_lightning.reports.figures import plot_seed_distributions
from pet_lightning.reports.stats import kendall_tau, mean_of, paired_t_test, std_of
from pet_lightning.reports.tables import BETTER, table2, table3, table4
from pet_lightning.studies.common import (
    DIFFERS,
    INCONCLUSIVE,
    REPRODUCES,
    UNTESTABLE,
    cell_mean,
    collapse_note,
    difference,
    findings_section,
    fmt,
    fmt_p,
    seed_average,
    study_runs,
    trainable_pct,
    write_table,
)
from pet_lightning.studies.published import load_published

PET_METHODS = ("adapter", "prefix", "lora", "bitfit")
FIGURE4_TASKS = ("cb", "copa", "wsc", "rte")


def _page(out: Path, title: str, runs, sections: list[str]) -> Path:
    (out / "report.md").write_text("\n".join([f"# {title}\n", runs.header + "\n", *sections]), encoding="utf-8")
    return out / "report.md"


def _published_table(report, name: str) -> str:
    """Ours beside the published figure and the difference, for every cell the stored table has."""
    published = load_published(name)
    if published is None:
        return (f"Published figures: none stored for {name} (pet_lightning/studies/published/README.md says how "
                "to add them); the findings below test the paper's claims on our numbers alone.\n")
    rows = []
    for task in report.tasks:
        for method in report.methods:
            paper = published.get(method, task)
            if paper is not None:
                ours = cell_mean(report.cell(task, method))
                rows.append(f"| {task} | {method} | {fmt(ours)} | {fmt(paper)} | {difference(ours, paper)} |")
    head = "| task | method | ours | paper | Δ |\n|---|---|---|---|---|\n"
    return f"Published figures: {published.citation}\n\n" + head + "\n".join(rows) + "\n"


def _group_findings(report, arrows: dict[tuple[str, str], str]) -> list[tuple[str, str, str]]:
    findings = []
    claims = (
        ("high", "PET methods are not better than full fine-tuning on high-resource tasks", False,
         "no high-resource (>= 10k training examples) task with 2+ seeds"),
        ("low", "PET methods may beat full fine-tuning on low-resource tasks (some method ↗ in the low group)", True,
         "no low-resource (< 1k training examples) task with 2+ seeds"),
    )
    for group, claim, wants_better, missing in claims:
        marks = {m: arrows[(m, group)] for m in PET_METHODS if (m, group) in arrows}
        if not marks:
            findings.append((claim, UNTESTABLE, missing))
            continue
        better = any(arrow == BETTER for arrow in marks.values())
        findings.append((claim, REPRODUCES if better == wants_better else DIFFERS,
                         "; ".join(f"{m}: {arrow}" for m, arrow in marks.items())))
    published = load_published("revisiting_table3")
    claim = "our Table 3 arrows agree with the paper's"
    if published is None:
        findings.append((claim, UNTESTABLE, "the paper's Table 3 is not stored"))
    else:
        words = {"up": BETTER, "same": "→", "down": "↘"}
        pairs = [(key, arrow, words.get(str(published.get(*key)))) for key, arrow in arrows.items()
                 if published.get(*key) is not None]
        agree = [key for key, arrow, theirs in pairs if arrow == theirs]
        verdict = UNTESTABLE if not pairs else REPRODUCES if len(agree) == len(pairs) else DIFFERS
        findings.append((claim, verdict, f"{len(agree)} of {len(pairs)} arrows agree"))
    return findings


def _prefix_lags(report) -> tuple[str, str, str]:
    claim = "prefix (prompt) tuning lags full fine-tuning (per-seed average over tasks, paired)"
    ours, full = seed_average(report, "prefix", report.tasks), seed_average(report, "full", report.tasks)
    seeds = sorted(set(ours) & set(full))
    if len(seeds) < 2:
        return claim, UNTESTABLE, "needs prefix and full runs of 2+ common seeds on every task"
    t, p = paired_t_test([ours[s] for s in seeds], [full[s] for s in seeds], "less")
    gap = mean_of([ours[s] - full[s] for s in seeds])
    verdict = REPRODUCES if p < report.alpha else INCONCLUSIVE if gap < 0 else DIFFERS
    return claim, verdict, f"prefix - full = {gap:+.2f} over seeds {', '.join(map(str, seeds))}; p = {fmt_p(p)}"


def fewer_parameters_finding(report, pct: dict[str, float], methods: list[str]) -> tuple[str, str, str]:
    """Kendall's tau between % trainable parameters and the std over seeds (mean over tasks) of ``methods``."""
    claim = "fewer trainable parameters -> lower std over seeds"
    pairs = []
    for method in methods:
        stds = [std_of(report.cell(t, method).values) for t in report.tasks if report.cell(t, method)]
        stds = [s for s in stds if not math.isnan(s)]
        if stds and method in pct:
            pairs.append((method, pct[method], mean_of(stds)))
    if len(pairs) < 3:
        return claim, UNTESTABLE, f"{len(pairs)} method(s) with a std and a parameter count; tau needs 3+"
    tau, p = kendall_tau([x for _, x, _ in pairs], [y for _, _, y in pairs])
    verdict = REPRODUCES if tau > 0 and p < report.alpha else INCONCLUSIVE if tau > 0 else DIFFERS
    listed = ", ".join(f"{m} {x:.3g}% std {y:.2f}" for m, x, y in pairs)
    return claim, verdict, f"tau = {fmt(tau, 2)} (p = {fmt_p(p)}): {listed}"


def write_table2(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "revisiting_table2")
    report = build_report(runs.records, baseline="full", alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    header, rows, csv_rows = table2(report)
    text2, paths = write_table(out, "table2", header, rows, csv_rows)
    header, rows, csv_rows = table3(report)
    text3, more = write_table(out, "table3", header, rows, csv_rows)
    paths.update(more)
    arrows = {(row["method"], row["group"]): row["trend"] for row in csv_rows}
    findings = [*_group_findings(report, arrows), _prefix_lags(report),
                fewer_parameters_finding(report, trainable_pct(runs.records), report.methods)]
    groups = ", ".join(f"{t}: {GROUP_LABELS[report.groups[t]]}" for t in report.tasks)
    paths["report"] = _page(out, "Revisiting study, Tables 2 and 3: PET methods against full fine-tuning", runs, [
        f"Resource groups by the examples the runs trained on: {groups}.\n",
        "## Table 2: mean ± std over seeds (↑/↓: one-tailed Welch test against `full`)\n", text2,
        "## Table 3: better / no difference / worse than `full`, per resource group\n", text3,
        _published_table(report, "revisiting_table2"), collapse_note(report), findings_section(findings)])
    return paths


def write_table4(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "revisiting_table4")
    report = build_report(runs.records, baseline="full", alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    header, rows, csv_rows = table4(report)
    text, paths = write_table(out, "table4", header, rows, csv_rows)
    findings = []
    for method in report.methods:
        stds = {row["seed_mode"]: row["std"] for row in csv_rows if row["method"] == method}
        claim = f"{method}: weight initialisation and data order each cause spread (std > 0 when only one varies)"
        if not {"init", "order"} <= set(stds):
            findings.append((claim, UNTESTABLE, "needs runs with only the init seed and only the order seed varied"))
            continue
        both = all(stds[m] > 0 for m in ("init", "order"))
        findings.append((claim, REPRODUCES if both else DIFFERS,
                         ", ".join(f"std {mode} {fmt(value, 2)}" for mode, value in stds.items())))
    paths["report"] = _page(out, "Revisiting study, Table 4: where the spread comes from", runs, [
        "## Table 4: std over seeds when both seeds vary (global), only the weight-init seed, or only the "
        "data-order seed\n", text, _published_table(report, "revisiting_table4"), findings_section(findings)])
    return paths


def write_figure4(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "revisiting_figure4")
    report = build_report(runs.records, baseline="full", alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    report.tasks = [t for t in FIGURE4_TASKS if t in report.tasks] + [t for t in report.tasks
                                                                       if t not in FIGURE4_TASKS]
    paths = {"figure4": plot_seed_distributions(report, out / "figure4.png")}
    rows = [[task, method, fmt(mean_of(c.values)), fmt(std_of(c.values)), fmt(min(c.values)), fmt(max(c.values))]
            for task in report.tasks for method in report.methods if (c := report.cell(task, method))]
    text, more = write_table(out, "figure4", ["task", "method", "mean", "std", "min", "max"], rows,
                             [dict(zip(("task", "method", "mean", "std", "min", "max"), r)) for r in rows])
    paths.update({"figure4_table": more["figure4"], "figure4_csv": more["figure4_csv"]})
    paths["report"] = _page(out, "Revisiting study, Figure 4: every seed's score", runs, [
        "![seed distributions](figure4.png)\n", text, collapse_note(report)])
    return paths


# ------------------------------------------------------------------------------------------------ Table 1
SETTINGS = (("1-2", "loss"), ("2-2", "loss"), ("1-2", "headline"), ("2-2", "headline"))


def validation_history(record: dict[str, Any]) -> dict[int, dict[str, float]]:
    """Per epoch, the validation metrics a run logged (CSV logger files of its run folder; a resumed run's later
    versions win)."""
    import csv

    folder = Path(str(record.get("config_path", ""))).parent / "csv"
    history: dict[int, dict[str, float]] = {}
    for path in sorted(folder.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])):
        with open(path, encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("val/loss") and row.get("epoch"):
                    values = {k: float(v) for k, v in row.items() if k.startswith("val/") and v}
                    history.setdefault(int(row["epoch"]), {}).update(values)
    return history


def selected_scores(history: dict[int, dict[str, float]], headline: str) -> dict[tuple[str, str], float]:
    """The reported half's headline metric x 100 at the epoch each setting selects: ``1-2`` selects on half 1
    (``val/...``), ``2-2`` on the reported half itself (``val/..._report``); by loss (min) or headline (max)."""
    reported = f"val/{headline}_report"
    if not history or any(reported not in values for values in history.values()):
        from pet_lightning.sweeps.files import SweepError

        raise SweepError("a run logged no val/*_report metrics: revisiting_table1 runs need data.init_args."
                         "watch_report: true (the reported half evaluated every epoch)")
    scores = {}
    for half, criterion in SETTINGS:
        key = f"val/{'loss' if criterion == 'loss' else headline}" + ("_report" if half == "2-2" else "")
        pick = min if criterion == "loss" else max
        epoch = pick(sorted(history), key=lambda e: history[e][key])  # ties: the earliest epoch, as checkpoints
        scores[(half, criterion)] = 100 * history[epoch][reported]
    return scores


def write_table1(records: list[dict[str, Any]], out: Path, alpha: float = 0.05) -> dict[str, Path]:
    runs = study_runs(records, "revisiting_table1")
    out.mkdir(parents=True, exist_ok=True)
    per_run = {(r["task"], r["method"], int(r["seed"])): (selected_scores(validation_history(r), r["headline"]), r)
               for r in runs.records}
    # The 1-2 / loss figure read from the history must be the tested checkpoint's score: the same model.
    drift = max(abs(scores[("1-2", "loss")] - 100 * float(r["score"])) for scores, r in per_run.values())
    keys = sorted({(task, method) for task, method, _ in per_run})
    header = ["task", "method", "seeds", *[f"{h} ({c})" for h, c in SETTINGS], "inflation (loss)", "p",
              "inflation (headline)", "p"]
    rows, csv_rows, findings = [], [], []
    for task, method in keys:
        seeds = sorted(seed for t, m, seed in per_run if (t, m) == (task, method))
        values = {s: [per_run[(task, method, seed)][0][s] for seed in seeds] for s in SETTINGS}
        row = [task, method, str(len(seeds)), *[f"{fmt(mean_of(values[s]))} ± {fmt(std_of(values[s]))}"
                                                for s in SETTINGS]]
        csv_row: dict[str, Any] = {"task": task, "method": method, "seeds": len(seeds)}
        for criterion in ("loss", "headline"):
            leaky, honest = values[("2-2", criterion)], values[("1-2", criterion)]
            gaps = [a - b for a, b in zip(leaky, honest)]
            _t, p = paired_t_test(leaky, honest, "greater")
            row += [f"{fmt(mean_of(gaps))} ± {fmt(std_of(gaps))}", fmt_p(p)]
            csv_row.update({f"inflation_{criterion}": mean_of(gaps), f"inflation_{criterion}_std": std_of(gaps),
                            f"p_{criterion}": p})
            claim = f"{task} / {method}: selecting on the reported half (2-2) inflates it, stopping on {criterion}"
            if len(seeds) < 2:
                findings.append((claim, UNTESTABLE, "needs 2+ seeds"))
            else:
                verdict = REPRODUCES if p < alpha else INCONCLUSIVE if mean_of(gaps) > 0 else DIFFERS
                findings.append((claim, verdict, f"2-2 - 1-2 = {mean_of(gaps):+.2f} ± {fmt(std_of(gaps))}; "
                                                 f"paired one-tailed p = {fmt_p(p)}"))
        csv_row.update({f"{h}_{c}": mean_of(values[(h, c)]) for h, c in SETTINGS})
        rows.append(row)
        csv_rows.append(csv_row)
    text, paths = write_table(out, "table1", header, rows, csv_rows)
    paths["report"] = _page(out, "Revisiting study, Table 1: what selecting on the reported examples adds", runs, [
        "The dev set is split in two label-stratified halves. `1-2`: select the epoch on half 1, report half 2 "
        "(what every study here reports); `2-2`: select and report on half 2 (leaky). Both come from the same runs "
        "(half 2 is evaluated every epoch and never monitored), so the inflation is paired by run. Selection by "
        "the lowest validation loss or the highest headline metric.\n",
        f"Check: the `1-2 (loss)` figure read from each run's history equals the score of the checkpoint the run "
        f"tested (max difference {drift:.2g} points over {len(per_run)} runs).\n",
        "## Table 1: reported half's score x 100 (mean ± std over seeds)\n", text,
        _published_table_note("revisiting_table1"), findings_section(findings)])
    return paths


def _published_table_note(name: str) -> str:
    published = load_published(name)
    if published is None:
        return f"Published figures: none stored for {name} (see pet_lightning/studies/published/README.md).\n"
    return f"Published figures: {published.citation} (see {name}.csv).\n"
