"""Revisiting study layouts (Tables 2, 3, 4 and Figure 4) on hand-made records with known scores: the paper's
column in every cell it has, on its metric; Table 3 agreement (k and kappa) by hand; one case per verdict."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from pet_lightning.reports.verdicts import holm
from pet_lightning.studies.published import load_published
from pet_lightning.studies.revisiting import REVISITING_NAMES, write_figure4, write_table2
from pet_lightning.studies.revisiting_table4 import write_table4
from tests.helpers.records import csv_rows as _csv_rows
from tests.helpers.records import finding as _finding
from tests.helpers.records import make_record
from tests.helpers.records import md_rows as _md_rows
from tests.helpers.records import mean as _mean

SEEDS = [1, 2, 3, 4, 5]
DEVIATIONS = [-2, -1, 0, 1, 2]
METHODS = ("full", "adapter", "prefix", "lora", "bitfit")
PAPER_ROWS = {"full": "FT", "adapter": "Adapter", "prefix": "PT", "lora": "LoRA", "bitfit": "BitFit"}
# Training examples per task: cb low (<1k), mrpc and sts-b medium (<10k), sst-2 high (>=10k).
TRAIN_EXAMPLES = {"cb": 250, "mrpc": 2000, "sts-b": 5000, "sst-2": 10000, "cola": 3000, "copa": 400}
PCT = {"bitfit": 0.1, "lora": 0.5, "adapter": 1.0, "prefix": 2.0, "full": 100.0}
SPREAD = {"bitfit": 0.5, "lora": 1.0, "adapter": 1.5, "prefix": 2.0, "full": 2.5}
CENTERS = {
    "cb": {"full": 70, "adapter": 70, "prefix": 65, "lora": 70, "bitfit": 80},
    "mrpc": {"full": 80, "adapter": 80, "prefix": 75, "lora": 80, "bitfit": 80},
    "sts-b": {"full": 85, "adapter": 85, "prefix": 80, "lora": 85, "bitfit": 85},
    "sst-2": {"full": 90, "adapter": 90, "prefix": 85, "lora": 89, "bitfit": 88},
}


def _scores(centers: dict = CENTERS) -> dict[tuple[str, str], list[float]]:
    return {(task, method): [center + SPREAD[method] * d for d in DEVIATIONS]
            for task, by_method in centers.items() for method, center in by_method.items()}


def _record(task: str, method: str, seed: int, score: float, study: str, seed_mode: str = "both") -> dict:
    """A run whose paper metric (record["report"]) is ``score``; its headline ``score`` field is 10 points off, so
    a table that read the headline instead of the paper's metric would show it."""
    metric = REVISITING_NAMES.metrics.get(task, "mcc")
    return make_record(task, method, seed, score + 10, study, seed_mode=seed_mode,
                       train_examples=TRAIN_EXAMPLES.get(task, 250), pct=PCT.get(method, 1.0),
                       report={metric: score / 100})


def _records(scores: dict, study: str = "revisiting_table2", seeds=SEEDS, **extra) -> list[dict]:
    return [_record(task, method, seed, score, study, **extra)
            for (task, method), values in scores.items() for seed, score in zip(seeds, values)]


PAPER2 = load_published("revisiting_table2")


@pytest.fixture(scope="module")
def table2_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("table2")
    paths = write_table2(_records(_scores()), out)
    assert {"table2", "table2_csv", "table3", "table3_csv", "report"} <= set(paths)
    return out


def test_table2_has_the_papers_figure_beside_ours_in_every_cell(table2_dir):
    rows = {(r["task"], r["method"]): r for r in _csv_rows(table2_dir / "table2.csv") if r.get("seeds")}
    scores = _scores()
    assert set(rows) == set(scores)
    for (task, method), values in scores.items():
        row = rows[(task, method)]
        assert float(row["mean"]) == pytest.approx(_mean(values))  # the paper's metric, not the headline
        assert float(row["std"]) == pytest.approx(statistics.stdev(values))
        paper = PAPER2.get(PAPER_ROWS[method], task)
        assert paper is not None and float(row["paper"]) == pytest.approx(paper)
        assert float(row["delta"]) == pytest.approx(_mean(values) - paper)
    md = _md_rows(table2_dir / "table2.md")
    header = md["method"]
    assert header[:6] == ["cb: ours (macro_f1)", "paper (F1)", "Δ", "mrpc: ours (f1)", "paper (F1)", "Δ"]
    assert "sts-b: ours (pearson)" in header and "paper (Pearson)" in header and "paper (accuracy)" in header
    assert md["full"][:3] == ["70.0 ± 4.0", "70.0 ± 13.3", "+0.0"]
    prefix_cb = f"{PAPER2.get('PT', 'cb'):.1f} ± {PAPER2.std('PT', 'cb'):.1f}↓"  # the paper's own mark
    assert md["prefix"][1] == prefix_cb
    # Group averages: ours over our tasks, the paper re-averaged over the same tasks (not its printed avg_medium).
    medium = header.index("avg medium: ours")
    assert header[medium + 1] == "paper, same tasks"
    assert md["full"][medium + 1] == f"{(90.54 + 90.42) / 2:.1f}"
    assert md["full"][medium + 1] != f"{PAPER2.get('FT', 'avg_medium'):.1f}"
    averages = [r for r in _csv_rows(table2_dir / "table2.csv") if r["task"] == "avg_medium"]
    assert averages and all(r["tasks"] == "2" and r["seeds"] == "" for r in averages)


def test_table2_marks_test_and_holm_are_stated(table2_dir):
    page = (table2_dir / "report.md").read_text(encoding="utf-8")
    assert "two one-tailed Welch t-tests against `full`, each at alpha = 0.05" in page
    assert "Holm-adjusted p values" in page
    rows = [r for r in _csv_rows(table2_dir / "table2.csv") if r.get("seeds") and r["method"] != "full"]
    assert len(rows) == 16  # 4 tasks x 4 PET methods, 2 one-sided p values each: one family of 32
    expected = holm([float(r["p_greater_than_baseline"]) for r in rows]
                    + [float(r["p_less_than_baseline"]) for r in rows])
    assert [float(r["p_greater_holm"]) for r in rows] == pytest.approx(expected[:16])
    assert [float(r["p_less_holm"]) for r in rows] == pytest.approx(expected[16:])


def test_a_task_the_paper_lacks_says_so(tmp_path):
    scores = {key: values for key, values in _scores().items() if key[0] == "mrpc"}
    scores.update({("cola", m): [50 + d for d in DEVIATIONS] for m in METHODS})
    write_table2(_records(scores), tmp_path)
    md = _md_rows(tmp_path / "table2.md")
    cola = md["method"].index("cola: ours (mcc)")
    assert md["full"][cola + 1] == "not in paper" and md["full"][cola + 2] == "–"
    medium = md["method"].index("avg medium: ours")
    assert md["full"][medium + 1] == "not in paper"  # the paper has no cola: no same-task average


def _kappa(ours: list[str], theirs: list[str]) -> float:
    n = len(ours)
    observed = sum(a == b for a, b in zip(ours, theirs)) / n
    chance = sum((ours.count(c) / n) * (theirs.count(c) / n) for c in set(ours) | set(theirs))
    return (observed - chance) / (1 - chance)


PAPER_TABLE3 = {("adapter", "low"): "↗", ("adapter", "medium"): "→", ("adapter", "high"): "↘",
                ("prefix", "low"): "↘", ("prefix", "medium"): "↘", ("prefix", "high"): "↘",
                ("lora", "low"): "↗", ("lora", "medium"): "↘", ("lora", "high"): "↘",
                ("bitfit", "low"): "↗", ("bitfit", "medium"): "→", ("bitfit", "high"): "↘"}


def test_table3_agreement_is_counted_and_kappa_computed_by_hand(table2_dir):
    ours = {(r["method"], r["group"]): r["trend"] for r in _csv_rows(table2_dir / "table3.csv")}
    assert set(ours) == set(PAPER_TABLE3)
    keys = sorted(PAPER_TABLE3)
    agree = sum(ours[k] == PAPER_TABLE3[k] for k in keys)
    kappa = _kappa([ours[k] for k in keys], [PAPER_TABLE3[k] for k in keys])
    assert 0 < agree < 12
    page = (table2_dir / "report.md").read_text(encoding="utf-8")
    assert f"**{agree} of 12** arrows agree, Cohen's kappa **{kappa:.2f}**" in page
    assert "The groups hold different tasks" in page
    md = _md_rows(table2_dir / "table3.md")
    assert md["method"] == ["low (<1k): ours", "paper", "medium (<10k): ours", "paper", "high (>=10k): ours",
                            "paper"]
    assert md["prefix"][1::2] == ["↘", "↘", "↘"] and md["bitfit"][1] == "↗"


# One case per verdict on the low group (cb), where the paper's Table 3 says Adapter, LoRA and BitFit ↗, PT ↘:
FULL_CB = [68, 69, 70, 71, 72]
VERDICT_CB = {
    "bitfit": ([89, 89.5, 90, 90.5, 91], "reproduces"),  # far above full
    "lora": ([49, 49.5, 50, 50.5, 51], "contradicted"),  # far below, the paper says ↗
    "prefix": ([70, 72, 68, 71, 69], "inconclusive"),  # no gap; the test could see the paper's 23.45 points
    "adapter": ([60, 65, 72, 80, 83], "underpowered"),  # +2 with sd 10: the paper's 7.49 is below the MDE
}


def test_the_papers_low_group_arrows_one_case_per_verdict(tmp_path):
    scores = {("cb", "full"): FULL_CB, **{("cb", m): values for m, (values, _) in VERDICT_CB.items()}}
    write_table2(_records(scores), tmp_path)
    report = tmp_path / "report.md"
    order = ["adapter", "prefix", "lora", "bitfit"]
    raw = []
    for method in order:
        values = VERDICT_CB[method][0]
        better = method != "prefix"
        a, b = (values, FULL_CB) if better else (FULL_CB, values)
        raw.append(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    adjusted = holm(raw)
    for method, p in zip(order, adjusted):
        word = "worse" if method == "prefix" else "better"
        row = _finding(report, f"{method} {word} than full on cb")
        assert row[1].startswith(f"**{VERDICT_CB[method][1]}"), (method, row)
        assert row[2].startswith(f"{p:.3g} (raw ")
    assert _finding(report, "adapter better than full on cb")[5] == f"+{77.49 - 70.00:.2f} points"
    union = _finding(report, "some PET method beats full fine-tuning on low-resource tasks")
    assert union[1] == "**reproduces**" and "Holm over 3" in union[7]


def test_high_group_tests_the_papers_worse_claims_not_the_absence_of_better(tmp_path):
    # No PET method differs from full on sst-2: the old rule ("no ↗") reproduced; the paper's ↘ claims do not.
    scores = {("sst-2", m): [90 + d for d in DEVIATIONS] for m in METHODS}
    write_table2(_records(scores), tmp_path)
    for method in ("adapter", "prefix", "lora", "bitfit"):
        row = _finding(tmp_path / "report.md", f"{method} worse than full on sst-2 (high")
        assert row[1].split(" ")[0] in ("**inconclusive", "**underpowered"), row


def test_prefix_lags_per_task_with_holm_and_a_sign_count(table2_dir):
    report = table2_dir / "report.md"
    for task in CENTERS:
        row = _finding(report, f"prefix lags full on {task}")
        # Every seed lags: the exact sign-flip p is 2^-5; Holm over the 4 tasks makes it 4/32, which no 5 seeds
        # can bring under 0.05 at alpha/4: underpowered by design.
        assert row[2] == f"{4 / 32:.3g} (raw {1 / 32:.3g})"
        assert row[1] == "**underpowered (paper's direction)**" and row[4].startswith("∞")
    count = _finding(report, "prefix lags full on most tasks")
    assert count[2] == f"{1 / 16:.3g}" and "prefix below full on 4 of 4 tasks" in count[7]


def test_prefix_lags_reproduces_with_enough_seeds(tmp_path):
    seeds = list(range(1, 8))
    scores = {(t, m): [c + (0 if m == "full" else -3) + 0.1 * i for i in range(7)]
              for t, c in (("mrpc", 80), ("sts-b", 85)) for m in ("full", "prefix")}
    write_table2(_records(scores, seeds=seeds), tmp_path)
    row = _finding(tmp_path / "report.md", "prefix lags full on mrpc")
    assert row[1] == "**reproduces**" and row[2] == f"{2 / 128:.3g} (raw {1 / 128:.3g})"


def test_fewer_parameters_is_a_within_task_trend_without_full(tmp_path):
    # Two tasks, three PET methods ordered by parameter share on both: S = 3 + 3 of 6 pairs; of the 36 equally
    # likely reassignments only one reaches S = 6, so p = 1/36; full (100%, the largest std) takes no part.
    spread = {"bitfit": 0.5, "lora": 1.0, "adapter": 2.0, "full": 0.1}
    scores = {(t, m): [70 + s * d for d in DEVIATIONS] for t in ("mrpc", "sts-b") for m, s in spread.items()}
    write_table2(_records(scores), tmp_path)
    row = _finding(tmp_path / "report.md", "fewer trainable parameters -> lower std")
    assert row[1] == "**reproduces**" and row[2] == f"{1 / 36:.3g}"
    assert row[3] == "+1.00 tau" and row[4] == "1.00 tau"
    assert "S = 6 over 6 pairs" in row[7] and "full" not in row[7]


# ------------------------------------------------------------------------------------------------------ Table 4


def _exact(center: float, sd: float, n: int) -> list[float]:
    """n values with mean ``center`` and sample std exactly ``sd``."""
    raw = [i - (n - 1) / 2 for i in range(n)]
    unit = statistics.stdev(raw)
    return [center + sd * r / unit for r in raw]


def _table4_records(table: dict, seeds: list[int]) -> list[dict]:
    return [_record("copa", method, seed, score, "revisiting_table4", seed_mode=mode)
            for (method, mode), values in table.items() for seed, score in zip(seeds, values)]


@pytest.mark.parametrize(("n", "sds", "verdict"), [
    (10, {"both": 1.0, "init": 3.0, "order": 3.0}, "reproduces"),
    (10, {"both": 3.0, "init": 0.1, "order": 3.0}, "contradicted"),
    (30, {"both": 2.0, "init": 1.1, "order": 1.1}, "inconclusive (paper's direction)"),
    (5, {"both": 3.0, "init": 3.0, "order": 3.0}, "underpowered (paper's direction)"),
])
def test_table4_one_case_per_verdict(tmp_path, n, sds, verdict):
    seeds = list(range(1, n + 1))
    table = {("full", mode): _exact(55, sd, n) for mode, sd in sds.items()}
    write_table4(_table4_records(table, seeds), tmp_path)
    row = _finding(tmp_path / "report.md", "full on copa: each single seed source spreads comparably")
    assert row[1] == f"**{verdict}**"
    # The weakest of the two sources speaks for the method, beside the paper's own ratio for that source.
    paper_ratios = {"init": 4.55 / 3.36, "order": 3.32 / 3.36}
    assert row[5] in {f"+{r / 0.5 - 1:.2f} sd ratio / 0.5 - 1" for r in paper_ratios.values()}


def test_table4_compares_stds_with_the_papers_and_gives_intervals(tmp_path):
    table = {("full", m): _exact(55, sd, 5) for m, sd in (("both", 3.0), ("init", 4.0), ("order", 2.0))}
    write_table4(_table4_records(table, SEEDS), tmp_path)
    md = _md_rows(tmp_path / "table4.md")
    assert md["task"][:3] == ["method", "global: ours std [95% CI]", "paper std"]
    low, high = 3.0 * math.sqrt(4 / stats.chi2.ppf(0.975, 4)), 3.0 * math.sqrt(4 / stats.chi2.ppf(0.025, 4))
    assert md["copa"][1:3] == [f"3.00 [{low:.2f}, {high:.2f}] (n=5)", "3.36"]
    assert md["copa"][4] == "4.55" and md["copa"][6] == "3.32"
    assert md["copa"][7:] == [f"{4 / 3:.2f}", f"{4.55 / 3.36:.2f}", f"{2 / 3:.2f}", f"{3.32 / 3.36:.2f}"]
    rows = {r["seed_mode"]: r for r in _csv_rows(tmp_path / "table4.csv")}
    assert float(rows["init"]["paper_std"]) == 4.55 and rows["init"]["seeds"] == "5"


def test_table4_a_zero_std_is_the_resolution_not_a_verdict(tmp_path):
    table = {("full", "both"): _exact(55, 3.0, 5), ("full", "init"): [55.0] * 5, ("full", "order"): _exact(55, 3, 5)}
    write_table4(_table4_records(table, SEEDS), tmp_path)
    page = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "A std of 0.00 (full (weight init))" in page
    row = _finding(tmp_path / "report.md", "full on copa")
    assert row[1] != "**contradicted**" and "not tested, the split's resolution" in row[7]


def test_table4_missing_init_runs_make_no_finding(tmp_path):
    table = {("full", m): _exact(55, 3.0, 5) for m in ("both", "order")}
    write_table4(_table4_records(table, SEEDS), tmp_path)
    assert "no findings" in (tmp_path / "report.md").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------------------------- Figure 4
FIGURE4 = {
    (task, method): [base + offset + d for d in (0, 3, -2, 5)]
    for task, base in (("rte", 60), ("cb", 70), ("copa", 55), ("wsc", 63))
    for method, offset in (("full", 0), ("lora", -1))
}


def test_figure4_order_metric_and_min_max(tmp_path):
    records = _records(FIGURE4, "revisiting_figure4", seeds=SEEDS[:4])
    records = [r | {"train_examples": 250} for r in records]
    paths = write_figure4(records, tmp_path)
    assert {"figure4", "figure4_table", "figure4_csv", "report"} <= set(paths)
    assert (tmp_path / "figure4.png").is_file() and (tmp_path / "figure4.png").stat().st_size > 0
    rows = _csv_rows(tmp_path / "figure4.csv")
    assert [r["task"] for r in rows] == ["cb", "cb", "copa", "copa", "wsc", "wsc", "rte", "rte"]
    assert rows[0]["metric"] == "macro_f1"
    for row in rows:
        values = FIGURE4[(row["task"], row["method"])]
        assert row["min"] == f"{min(values):.1f}" and row["max"] == f"{max(values):.1f}"
        assert row["mean"] == f"{_mean(values):.1f}" and row["std"] == f"{statistics.stdev(values):.1f}"
    assert "![seed distributions](figure4.png)" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_a_report_of_reused_runs_names_where_they_were_trained(tmp_path):
    records = [r | {"train_examples": 250} for r in _records(FIGURE4, "revisiting_figure4", seeds=SEEDS[:4])]
    source = "/work/runs/studies/revisiting_table2/cpu/results.jsonl"
    for record in records[:3]:
        record["reused_from"] = {"results": source, "run_id": record["run_id"]}
    write_figure4(records, tmp_path)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert f"{len(records)} runs (3 reused from the identical runs of revisiting_table2/cpu)" in text
