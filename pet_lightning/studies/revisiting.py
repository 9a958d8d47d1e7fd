"""Report layouts of the "Revisiting Parameter-Efficient Tuning" study (Chen et al., EMNLP 2022): Tables 2 and 3
and Figure 4 here; Table 1 in :mod:`~pet_lightning.studies.revisiting_table1`, Table 4 in
:mod:`~pet_lightning.studies.revisiting_table4`; the claims Tables 2 and 3 test in
:mod:`~pet_lightning.studies.revisiting_claims`.

Table 2 (mean ± std, one-tailed Welch marks against full fine-tuning) and Table 3 (arrows per resource group) come
from the same runs (study file ``revisiting_table2``). Methods are named ``full``, ``adapter``, ``prefix``,
``lora``, ``bitfit`` as in ``configs/revisiting/``; :data:`REVISITING_NAMES` maps them, our settings and seed modes
onto the paper's names, and names the paper's metric of each task, in one place for every table of the study.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pet_lightning.reports.cells import GROUP_LABELS, GROUPS, Report, build_report
from pet_lightning.reports.figures import plot_seed_distributions
from pet_lightning.reports.stats import mean_of, std_of
from pet_lightning.reports.tables import (
    BETTER,
    MARKS_TEST,
    PAPER_MARKS,
    SAME,
    WORSE,
    cell_marks,
    group_trend_table,
    mean_std_beside_paper,
)
from pet_lightning.reports.verdicts import cohen_kappa
from pet_lightning.studies.common import StudyRuns, collapse_note, findings_table, fmt, trainable_pct, write_table
from pet_lightning.studies.published import PaperNames, StudyTable, load_study_table
from pet_lightning.studies.registry import layout

PET_METHODS = ("adapter", "prefix", "lora", "bitfit")
FIGURE4_TASKS = ("cb", "copa", "wsc", "rte")
# The paper's Table 3 words as the arrows our Table 3 prints.
GROUP_WORDS = {"better": BETTER, "no significant difference": SAME, "worse": WORSE}
# The paper's resource groups (its Table 2 columns), to say which tasks its Table 3 arrows rest on.
PAPER_GROUP_TASKS = {"low": ("cb", "copa", "wsc"), "medium": ("rte", "mrpc", "wic", "sts-b", "boolq"),
                     "high": ("sst-2", "qnli", "qqp", "mnli")}
REVISITING_NAMES = PaperNames(
    rows={"full": "FT", "adapter": "Adapter", "prefix": "PT", "lora": "LoRA", "bitfit": "BitFit"},
    # Table 1: our (selection half, criterion) -> the paper's "half/stopping metric" (RTE's headline is accuracy);
    # Table 4: our seed modes -> the paper's sources of randomness.
    settings={"1-2/loss": "1-2/loss", "2-2/loss": "2-2/loss", "1-2/headline": "1-2/accuracy",
              "2-2/headline": "2-2/accuracy", "both": "global", "init": "weight_init", "order": "data_order"},
    # The paper's caption: "F1 for CB and MRPC, Pearson for STS-B, accuracy otherwise (MNLI matched)". QQP's and CB's
    # headlines differ (F1, the mean of accuracy and macro-F1), so every task the paper reports is named.
    metrics={"cb": "macro_f1", "mrpc": "f1", "sts-b": "pearson", "copa": "accuracy", "wsc": "accuracy",
             "rte": "accuracy", "wic": "accuracy", "boolq": "accuracy", "sst-2": "accuracy", "qnli": "accuracy",
             "qqp": "accuracy", "mnli": "accuracy"},
    metric_note=("Metrics, as the paper's caption states: CB F1 (our `macro_f1`, not the `avg_acc_f1` headline), "
                 "MRPC F1, STS-B Pearson, accuracy otherwise (QQP accuracy, MNLI matched accuracy). A task the "
                 "paper does not report keeps its headline and has no paper column."),
)
PAPER_METRIC = {"cb": "F1", "mrpc": "F1", "sts-b": "Pearson"}


def paper_metric(task: str) -> str:
    return PAPER_METRIC.get(task, "accuracy")


def study_table(name: str) -> StudyTable | None:
    return load_study_table(name, REVISITING_NAMES)


def study_report(records: list[dict[str, Any]], alpha: float) -> Report:
    """Cells scored on the paper's metric of each task (:data:`REVISITING_NAMES`)."""
    tasks = {str(r["task"]) for r in records}
    metrics = {task: metric for task, metric in REVISITING_NAMES.metrics.items() if task in tasks}
    return build_report(records, baseline="full", alpha=alpha, metrics=metrics)


def _page(out: Path, title: str, runs, sections: list[str]) -> Path:
    sections = [*sections, runs.resolution(dict(REVISITING_NAMES.metrics))]  # on the metrics the tables compare
    (out / "report.md").write_text("\n".join([f"# {title}\n", runs.header + "\n", *sections]), encoding="utf-8")
    return out / "report.md"


def published_note(table: StudyTable | None, name: str) -> str:
    if table is None:
        return (f"Published figures: none stored for {name} (pet_lightning/studies/published/README.md says how to "
                "add them).\n")
    return f"Published figures: {table.citation} (`pet_lightning/studies/published/{name}.csv`).\n"


def marks_agreement(report: Report, paper: StudyTable | None) -> str:
    """How often our Table 2 marks equal the paper's, over the cells both have, with Cohen's kappa."""
    if paper is None:
        return ""
    marks = cell_marks(report)
    pairs = [(found["mark"], PAPER_MARKS.get(paper.mark(method, task) or "", ""))
             for (task, method), found in marks.items() if paper.get(method, task) is not None]
    if not pairs:
        return "Marks against the paper's: no cell of ours is in the paper's Table 2.\n"
    agree = sum(ours == theirs for ours, theirs in pairs)
    kappa = cohen_kappa([o or "none" for o, _ in pairs], [t or "none" for _, t in pairs])
    return (f"Marks against the paper's Table 2 (descriptive: the paper's own marks cannot all be re-derived from "
            f"its mean ± std, and its n = 20 runs are not ours): {agree} of {len(pairs)} cells carry the same mark, "
            f"Cohen's kappa {fmt(kappa, 2)}.\n")


def table3_agreement(report: Report, rows: list[dict[str, Any]], paper: StudyTable | None) -> tuple[str, int, int,
                                                                                                      float]:
    """``(sentence, agree, pairs, kappa)``: our Table 3 arrows against the paper's words (B3 of the review: the
    words are read from ``mark``, mapped to arrows, in the paper's row names)."""
    if paper is None:
        return "Agreement with the paper's Table 3: not stored.\n", 0, 0, math.nan
    pairs = [(row["method"], row["group"], row["trend"], GROUP_WORDS.get(paper.mark(row["method"], row["group"])
                                                                         or "")) for row in rows]
    pairs = [p for p in pairs if p[3] is not None]
    agree = sum(ours == theirs for _m, _g, ours, theirs in pairs)
    kappa = cohen_kappa([p[2] for p in pairs], [p[3] for p in pairs])
    ours_tasks = "; ".join(f"{g}: {', '.join(t for t in report.tasks if report.group_of(t) == g)}"
                           for g in GROUPS if any(report.group_of(t) == g for t in report.tasks))
    theirs_tasks = "; ".join(f"{g}: {', '.join(tasks)}" for g, tasks in PAPER_GROUP_TASKS.items())
    text = (f"Agreement with the paper's Table 3: **{agree} of {len(pairs)}** arrows agree, Cohen's kappa "
            f"**{fmt(kappa, 2)}** (agreement beyond chance; 1 = all agree, 0 = what chance gives). The groups hold "
            f"different tasks (ours {ours_tasks}; the paper's {theirs_tasks}), so this is a comparison of verdicts, "
            "not a test of the paper's.\n")
    return text, agree, len(pairs), kappa


def row_paper(paper: StudyTable | None, method: str, group: str) -> str:
    """The paper's Table 3 arrow for (method, group); ``–`` where it prints none."""
    return GROUP_WORDS.get((paper.mark(method, group) if paper else None) or "", "–")


@layout("revisiting_table2")
def write_table2(runs: StudyRuns, out: Path, alpha: float) -> dict[str, Path]:
    from pet_lightning.studies.revisiting_claims import (
        fewer_parameters_test,
        group_findings,
        prefix_lags_findings,
    )

    report = study_report(runs.records, alpha)
    paper2, paper3 = study_table("revisiting_table2"), study_table("revisiting_table3")
    header, rows, csv_rows = mean_std_beside_paper(report, paper2, {t: paper_metric(t) for t in report.tasks})
    text2, paths = write_table(out, "table2", header, rows, csv_rows)
    header, rows, csv3 = group_trend_table(report)
    header = [header[0], *(c for h in header[1:] for c in (f"{h}: ours", "paper"))]
    groups = [g for g in GROUPS if any(report.group_of(t) == g for t in report.tasks)]
    trends = {(r["method"], r["group"]): r["trend"] for r in csv3}
    for row in csv3:
        row["paper"] = GROUP_WORDS.get((paper3.mark(row["method"], row["group"]) if paper3 else None) or "", "")
    rows = [[m, *(c for g in groups for c in (trends.get((m, g), "?"), row_paper(paper3, m, g)))]
            for m in report.methods if m != report.baseline]
    text3, more = write_table(out, "table3", header, rows, csv3)
    paths.update(more)
    agreement, *_ = table3_agreement(report, csv3, paper3)
    findings = [*group_findings(report, paper2, paper3, alpha), *prefix_lags_findings(report, paper2, alpha),
                fewer_parameters_test(report, trainable_pct(runs.records), [m for m in report.methods
                                                                            if m in PET_METHODS], paper2, alpha)]
    groups_text = ", ".join(f"{t}: {GROUP_LABELS[report.groups[t]]}" for t in report.tasks)
    paths["report"] = _page(out, "Revisiting study, Tables 2 and 3: PET methods against full fine-tuning", runs, [
        f"Resource groups by the examples the runs trained on: {groups_text}.\n",
        REVISITING_NAMES.metric_note + "\n",
        f"## Table 2: mean ± std over seeds beside the paper's; ↑/↓: {MARKS_TEST.format(base='full', alpha=alpha)}\n",
        "Each task's columns: ours (the metric named in the header), the paper's figure ± std with its own mark, "
        "and Δ = ours - paper (our reported half against the paper's dev set: different examples, another model "
        "at cpu scale; a scale gap, not an error bar). `avg <group>` averages our tasks of the group; `paper, same "
        "tasks` re-averages the paper over the same tasks (its printed averages cover other tasks and are not "
        "shown). Averages mix metrics and are for reading only: no test uses them.\n", text2,
        marks_agreement(report, paper2),
        "## Table 3: ↗ better / → no significant difference / ↘ worse than `full`, per resource group (ours | "
        "the paper's)\n",
        "Ours: one-tailed Welch per task, combined over the group's tasks with equal weights (Stouffer), each at "
        f"alpha = {alpha}, so that no task's metric scale decides a group.\n", text3, agreement,
        published_note(paper2, "revisiting_table2"), collapse_note(report),
        findings_table(findings, "Group claims: one-sided Welch per PET method and task, the paper's own test "
                                 "for its marks (unpaired: valid whether or not runs of one seed correlate, and "
                                 "conservative when they do); Holm over each group's family, the MDE at alpha / "
                                 "(family size), the level the smallest p must meet. Prefix lags: paired by seed "
                                 "(exact sign-flip), Holm over the tasks. The paper's effect is its own Table 2 gap "
                                 "on the same task and metric; on quantised cells (CB: one example moves F1 by "
                                 "several points) every test here is approximate.")])
    return paths


@layout("revisiting_figure4")
def write_figure4(runs: StudyRuns, out: Path, alpha: float) -> dict[str, Path]:
    report = study_report(runs.records, alpha)
    report.tasks = [t for t in FIGURE4_TASKS if t in report.tasks] + [t for t in report.tasks
                                                                       if t not in FIGURE4_TASKS]
    paths = {"figure4": plot_seed_distributions(report, out / "figure4.png")}
    rows = [[task, report.headline[task], method, fmt(mean_of(c.values)), fmt(std_of(c.values)), fmt(min(c.values)),
             fmt(max(c.values))]
            for task in report.tasks for method in report.methods if (c := report.cell(task, method))]
    columns = ("task", "metric", "method", "mean", "std", "min", "max")
    text, more = write_table(out, "figure4", list(columns), rows, [dict(zip(columns, r)) for r in rows])
    paths.update({"figure4_table": more["figure4"], "figure4_csv": more["figure4_csv"]})
    paths["report"] = _page(out, "Revisiting study, Figure 4: every seed's score", runs, [
        REVISITING_NAMES.metric_note + "\n", "![seed distributions](figure4.png)\n", text, collapse_note(report),
        "The paper's Figure 4 is a plot with no printed numbers: there is no published column to set beside ours.\n"])
    return paths


__all__ = ["REVISITING_NAMES", "write_figure4", "write_table2"]
