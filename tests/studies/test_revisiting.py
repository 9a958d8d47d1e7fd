"""Revisiting study layouts (Tables 2, 3, 4 and Figure 4) on hand-made records with known scores."""

from __future__ import annotations

import statistics

import pytest
from scipy import stats

from pet_lightning.studies.common import DIFFERS, REPRODUCES, UNTESTABLE
from pet_lightning.studies.revisiting import write_figure4, write_table2, write_table4
from tests.studies.records import csv_rows as _csv_rows
from tests.studies.records import finding as _finding
from tests.studies.records import make_record
from tests.studies.records import md_rows as _md_rows
from tests.studies.records import mean as _mean

SEEDS = [1, 2, 3, 4, 5]
DEVIATIONS = [-2, -1, 0, 1, 2]
METHODS = ("full", "adapter", "prefix", "lora", "bitfit")
# Training examples per task: cb low (<1k), mrpc medium (<10k), sst-2 high (>=10k).
TRAIN_EXAMPLES = {"cb": 250, "mrpc": 2000, "sst-2": 10000}
# % trainable parameters; the spread over seeds grows with it (bitfit smallest, full largest).
PCT = {"bitfit": 0.1, "lora": 0.5, "adapter": 1.0, "prefix": 2.0, "full": 100.0}
SPREAD = {"bitfit": 0.5, "lora": 1.0, "adapter": 1.5, "prefix": 2.0, "full": 2.5}
# Mean score x 100 per (task, method). bitfit is clearly above full on cb; on sst-2 no PET method is above full;
# prefix is 5 points below full on every task (and, with a spread 0.5 below full's, 4 to 6 below on every seed).
CENTERS = {
    "cb": {"full": 70, "adapter": 70, "prefix": 65, "lora": 70, "bitfit": 80},
    "mrpc": {"full": 80, "adapter": 80, "prefix": 75, "lora": 80, "bitfit": 80},
    "sst-2": {"full": 90, "adapter": 90, "prefix": 85, "lora": 89, "bitfit": 88},
}


def _scores(centers: dict = CENTERS) -> dict[tuple[str, str], list[float]]:
    return {(task, method): [center + SPREAD[method] * d for d in DEVIATIONS]
            for task, by_method in centers.items() for method, center in by_method.items()}


def _record(task: str, method: str, seed: int, score: float, study: str, seed_mode: str = "both",
            train_examples: int | None = None, pct: float | None = None) -> dict:
    return make_record(task, method, seed, score, study, seed_mode=seed_mode,
                       train_examples=train_examples if train_examples is not None else TRAIN_EXAMPLES.get(task, 250),
                       pct=pct if pct is not None else PCT.get(method, 1.0))


def _records(scores: dict, study: str = "revisiting_table2", seeds=SEEDS, **extra) -> list[dict]:
    return [_record(task, method, seed, score, study, **extra)
            for (task, method), values in scores.items() for seed, score in zip(seeds, values)]





HIGH_CLAIM = "PET methods are not better than full fine-tuning on high-resource tasks"
LOW_CLAIM = "PET methods may beat full fine-tuning on low-resource tasks"
PREFIX_CLAIM = "prefix (prompt) tuning lags full fine-tuning"
FEWER_CLAIM = "fewer trainable parameters -> lower std over seeds"


@pytest.fixture
def table2_dir(tmp_path):
    paths = write_table2(_records(_scores()), tmp_path)
    assert {"table2", "table2_csv", "table3", "table3_csv", "report"} <= set(paths)
    return tmp_path


def test_table2_and_table3_files_and_cells(table2_dir):
    assert (table2_dir / "table2.csv").is_file() and (table2_dir / "table3.csv").is_file()
    rows = {(r["task"], r["method"]): r for r in _csv_rows(table2_dir / "table2.csv")}
    scores = _scores()
    for key, values in scores.items():
        assert float(rows[key]["mean"]) == pytest.approx(_mean(values))
        assert float(rows[key]["std"]) == pytest.approx(statistics.stdev(values))
    assert rows[("cb", "bitfit")]["group"] == "low"
    assert rows[("mrpc", "full")]["group"] == "medium"
    assert rows[("sst-2", "full")]["group"] == "high"
    assert rows[("cb", "bitfit")]["mark"] == "↑"
    md = _md_rows(table2_dir / "table3.md")
    assert md["method"] == ["low (<1k)", "medium (<10k)", "high (>=10k)"]
    assert md["bitfit"][0] == "↗"
    assert all(md[m][2] in ("→", "↘") for m in ("adapter", "prefix", "lora", "bitfit"))
    assert md["prefix"] == ["↘", "↘", "↘"]
    assert "full" not in md


def test_table3_group_findings_reproduce(table2_dir):
    report = table2_dir / "report.md"
    high = _finding(report, HIGH_CLAIM)
    assert high[1] == f"**{REPRODUCES}**"
    assert all(f"{m}: " in high[2] for m in ("adapter", "prefix", "lora", "bitfit"))
    assert "↗" not in high[2] and "prefix: ↘" in high[2]
    low = _finding(report, LOW_CLAIM)
    assert low[1] == f"**{REPRODUCES}**"
    assert "bitfit: ↗" in low[2]
    # No published Table 2 or 3 is stored.
    assert "Published figures: none stored for revisiting_table2" in report.read_text(encoding="utf-8")
    assert _finding(report, "our Table 3 arrows agree")[1] == f"**{UNTESTABLE}**"


def test_low_group_claim_does_not_reproduce_without_an_up_arrow(tmp_path):
    centers = {task: dict(by_method) for task, by_method in CENTERS.items()}
    centers["cb"]["bitfit"] = 70
    write_table2(_records(_scores(centers)), tmp_path)
    assert "↗" not in _md_rows(tmp_path / "table3.md")["bitfit"]
    low = _finding(tmp_path / "report.md", LOW_CLAIM)
    assert low[1] == f"**{DIFFERS}**"
    assert "↗" not in low[2]


def test_high_claim_untestable_without_high_resource_task(tmp_path):
    scores = {key: values for key, values in _scores().items() if key[0] != "sst-2"}
    write_table2(_records(scores), tmp_path)
    assert _finding(tmp_path / "report.md", HIGH_CLAIM)[1] == f"**{UNTESTABLE}**"
    assert _finding(tmp_path / "report.md", LOW_CLAIM)[1] == f"**{REPRODUCES}**"


def test_prefix_lags_full_with_scipy_paired_p(table2_dir):
    scores = _scores()
    tasks = list(CENTERS)
    assert all(p < f for t in tasks for p, f in zip(scores[(t, "prefix")], scores[(t, "full")]))
    prefix = [_mean([scores[(t, "prefix")][i] for t in tasks]) for i in range(len(SEEDS))]
    full = [_mean([scores[(t, "full")][i] for t in tasks]) for i in range(len(SEEDS))]
    expected = stats.ttest_rel(prefix, full, alternative="less")
    assert expected.pvalue < 0.05
    finding = _finding(table2_dir / "report.md", PREFIX_CLAIM)
    assert finding[1] == f"**{REPRODUCES}**"
    assert f"p = {expected.pvalue:.3g}" in finding[2]
    assert f"prefix - full = {_mean([a - b for a, b in zip(prefix, full)]):+.2f}" in finding[2]
    assert "seeds 1, 2, 3, 4, 5" in finding[2]


def test_fewer_parameters_kendall_tau(table2_dir):
    scores = _scores()
    pct = [PCT[m] for m in METHODS]
    mean_std = [_mean([statistics.stdev(scores[(t, m)]) for t in CENTERS]) for m in METHODS]
    expected = stats.kendalltau(pct, mean_std)
    assert expected.statistic == pytest.approx(1.0) and expected.pvalue < 0.05
    finding = _finding(table2_dir / "report.md", FEWER_CLAIM)
    assert f"tau = {expected.statistic:.2f} (p = {expected.pvalue:.3g})" in finding[2]
    assert finding[1] == f"**{REPRODUCES}**"
    assert "bitfit 0.1% std " in finding[2] and "full 100% std " in finding[2]


# Table 4: std over seeds when both seeds vary, only the init seed, or only the order seed (copa, low).
TABLE4 = {
    ("full", "both"): [60, 64, 68, 62], ("full", "init"): [61, 63, 65, 62], ("full", "order"): [62, 64, 63, 66],
    ("lora", "both"): [58, 61, 63, 60], ("lora", "init"): [59, 60, 62, 61], ("lora", "order"): [60, 61, 63, 62],
}


def _table4_records(table: dict) -> list[dict]:
    return [_record("copa", method, seed, score, "revisiting_table4", seed_mode=mode)
            for (method, mode), values in table.items() for seed, score in zip(SEEDS, values)]


def _table4_csv(path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["method"], r["seed_mode"]): r for r in _csv_rows(path)}


def test_table4_spread_from_both_sources_reproduces(tmp_path):
    paths = write_table4(_table4_records(TABLE4), tmp_path)
    assert {"table4", "table4_csv", "report"} <= set(paths)
    rows = _table4_csv(tmp_path / "table4.csv")
    assert set(rows) == set(TABLE4)
    for key, values in TABLE4.items():
        assert float(rows[key]["std"]) == pytest.approx(statistics.stdev(values))
        assert int(rows[key]["n"]) == 4
    header = _md_rows(tmp_path / "table4.md")["task"]
    assert header == ["method", "std global", "std weight init", "std data order"]
    for method in ("full", "lora"):
        finding = _finding(tmp_path / "report.md", f"{method}: weight initialisation and data order")
        assert finding[1] == f"**{REPRODUCES}**"
        assert f"std order {statistics.stdev(TABLE4[(method, 'order')]):.2f}" in finding[2]


def test_table4_identical_scores_in_order_mode_do_not_reproduce(tmp_path):
    table = dict(TABLE4)
    table[("lora", "order")] = [61, 61, 61, 61]
    write_table4(_table4_records(table), tmp_path)
    assert float(_table4_csv(tmp_path / "table4.csv")[("lora", "order")]["std"]) == 0.0
    assert _finding(tmp_path / "report.md", "lora: weight initialisation")[1] == f"**{DIFFERS}**"
    assert _finding(tmp_path / "report.md", "full: weight initialisation")[1] == f"**{REPRODUCES}**"


def test_table4_missing_init_runs_not_testable(tmp_path):
    table = {key: values for key, values in TABLE4.items() if key[1] != "init"}
    write_table4(_table4_records(table), tmp_path)
    for method in ("full", "lora"):
        assert _finding(tmp_path / "report.md", f"{method}: weight initialisation")[1] == f"**{UNTESTABLE}**"


# Figure 4: every seed's score; all four tasks trained on 250 examples (one group), so without the figure's own
# order they would sort by name (cb, copa, rte, wsc).
FIGURE4 = {
    (task, method): [base + offset + d for d in (0, 3, -2, 5)]
    for task, base in (("rte", 60), ("cb", 70), ("copa", 55), ("wsc", 63))
    for method, offset in (("full", 0), ("lora", -1))
}


def test_figure4_order_and_min_max(tmp_path):
    records = _records(FIGURE4, "revisiting_figure4", seeds=SEEDS[:4], train_examples=250)
    paths = write_figure4(records, tmp_path)
    assert {"figure4", "figure4_table", "figure4_csv", "report"} <= set(paths)
    assert (tmp_path / "figure4.png").is_file() and (tmp_path / "figure4.png").stat().st_size > 0
    rows = _csv_rows(tmp_path / "figure4.csv")
    assert [r["task"] for r in rows] == ["cb", "cb", "copa", "copa", "wsc", "wsc", "rte", "rte"]
    assert [r["method"] for r in rows[:2]] == ["full", "lora"]
    for row in rows:
        values = FIGURE4[(row["task"], row["method"])]
        assert row["min"] == f"{min(values):.1f}"
        assert row["max"] == f"{max(values):.1f}"
        assert row["mean"] == f"{_mean(values):.1f}"
        assert row["std"] == f"{statistics.stdev(values):.1f}"
    assert "![seed distributions](figure4.png)" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_a_report_of_reused_runs_names_where_they_were_trained(tmp_path):
    records = _records(FIGURE4, "revisiting_figure4", seeds=SEEDS[:4], train_examples=250)
    source = "/work/runs/studies/revisiting_table2/cpu/results.jsonl"
    for record in records[:3]:
        record["reused_from"] = {"results": source, "run_id": record["run_id"]}
    write_figure4(records, tmp_path)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert f"{len(records)} runs (3 reused from the identical runs of revisiting_table2/cpu)" in text
