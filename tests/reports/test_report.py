"""Reports from results files with known numbers; the t-test against scipy."""

from __future__ import annotations

import csv
import json
import math

import pytest
from scipy import stats

from pet_lightning.cli import EXTRA_COMMANDS, main
from pet_lightning.reports import (
    build_report,
    group_trend_table,
    log_to_wandb,
    mean_std_table,
    welch_t_test,
    write_report,
)
from pet_lightning.sweeps.records import SweepError

SEEDS = [1111, 2222, 3333, 4444, 5555]
# Scores x 100 per (task, method): cb is a low-resource task, rte a medium one.
KNOWN = {
    ("cb", "full"): [80, 82, 84, 86, 88],  # mean 84, std sqrt(10) = 3.16
    ("cb", "bitfit"): [70, 71, 72, 73, 74],  # mean 72, std 1.58: significantly worse
    ("cb", "lora"): [84, 85, 86, 87, 88],  # mean 86: better, but not significantly
    ("rte", "full"): [60, 61, 62, 63, 64],  # mean 62
    ("rte", "bitfit"): [66, 67, 68, 69, 70],  # mean 68: significantly better
    ("rte", "lora"): [61, 61, 62, 63, 63],  # mean 62
}


def _read_csv(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


TRAIN_EXAMPLES = {"cb": 250, "rte": 2490}


def _record(task, method, seed, mode, score, leaky=False, **extra) -> dict:
    return {"run_id": f"{task}.{method}.{mode}.{seed}", "task": task, "method": method, "seed": seed,
            "seed_mode": mode, "score": score / 100, "headline": "accuracy", "steps": 100 + seed % 7,
            "best_step": 50, "leaky": leaky, "protocol": "standard" if leaky else "dev_split",
            "config_hash": f"{task}-{method}", "run_hash": f"{seed}", "train_examples": TRAIN_EXAMPLES[task],
            "status": "ok", **extra}


def _records(leaky: bool = False) -> list[dict]:
    records = []
    for (task, method), scores in KNOWN.items():
        for seed, score in zip(SEEDS, scores):
            records.append(_record(task, method, seed, "both", score, leaky))
    # Table 4 rows: cb/full with only the init seed or only the order seed varying.
    for mode, scores in (("init", [83, 84, 85, 84, 84]), ("order", [78, 90, 84, 81, 87])):
        for seed, score in zip(SEEDS, scores):
            records.append(_record("cb", "full", seed, mode, score, leaky, steps=100))
    return records


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize(("a", "b"), [([1.0, 2.0, 3.5, 4.0], [2.0, 2.5, 2.7]),
                                      ([70, 71, 72, 73, 74], [80, 82, 84, 86, 88]),
                                      ([0.61, 0.64, 0.59, 0.66, 0.60, 0.63], [0.58, 0.57, 0.62])])
def test_welch_t_test_equals_scipy(a, b, alternative):
    t, _, p = welch_t_test(a, b, alternative)
    expected = stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
    assert t == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)


def test_welch_t_test_needs_two_values_per_side():
    with pytest.raises(ValueError, match="at least 2 values per side"):
        welch_t_test([1.0], [1.0, 2.0])
    # No spread at all: t and df undefined, and equal means are no evidence (p = 1; review B10).
    t, df, p = welch_t_test([1.0, 1.0], [1.0, 1.0])
    assert math.isnan(t) and math.isnan(df) and p == 1.0


def test_mean_std_table_cells_marks_and_group_averages():
    header, rows, csv_rows = mean_std_table(build_report(_records()))
    assert header == ["task", "group", "metric", "full", "bitfit", "lora"]
    cells = {row[0]: row[3:] for row in rows}
    assert cells["cb"] == ["84.0 ± 3.2", "72.0 ± 1.6↓", "86.0 ± 1.6"]
    assert cells["rte"] == ["62.0 ± 1.6", "68.0 ± 1.6↑", "62.0 ± 1.0"]
    assert cells["avg low (<1k)"] == ["84.0", "72.0", "86.0"]
    assert cells["avg medium (<10k)"] == ["62.0", "68.0", "62.0"]
    bitfit_cb = next(r for r in csv_rows if r["task"] == "cb" and r["method"] == "bitfit")
    scipy_p = stats.ttest_ind(KNOWN[("cb", "bitfit")], KNOWN[("cb", "full")], equal_var=False, alternative="less")
    assert bitfit_cb["p_less_than_baseline"] == pytest.approx(scipy_p.pvalue)
    assert bitfit_cb["max"] == 74 and bitfit_cb["seeds"] == 5 and "n" not in bitfit_cb
    # Holm over every mark's p of the table (4 cells x 2 tails = 8): the smallest p times 8.
    pvalues = sorted(p for r in csv_rows if "p_less_holm" in r and r["method"] != "full"
                     for p in (r["p_greater_than_baseline"], r["p_less_than_baseline"]))
    smallest = min(bitfit_cb["p_less_than_baseline"], pvalues[0])
    assert len(pvalues) == 8 and pvalues[0] == smallest
    assert bitfit_cb["p_less_holm"] == pytest.approx(min(1.0, 8 * smallest))
    averages = [r for r in csv_rows if r["task"].startswith("avg_")]
    assert averages and all(r["tasks"] == 1 and "seeds" not in r for r in averages)


def test_group_trend_table_trends_per_resource_group():
    header, rows, _ = group_trend_table(build_report(_records()))
    assert header == ["method", "low (<1k)", "medium (<10k)"]
    assert rows == [["bitfit", "↘", "↗"], ["lora", "→", "→"]]


def test_group_trend_table_combines_a_groups_tasks_with_equal_weights():
    # rte and a second medium task on a 100x wider scale: a test on the average score would be decided by the
    # wide task alone (bitfit - full = -30 there against +6 on rte); Stouffer weighs each task's Welch p once.
    records = [r for r in _records() if r["task"] == "rte"]
    wide = {"full": [500, 600, 700, 800, 900], "bitfit": [480, 570, 660, 750, 840]}
    for method, scores in wide.items():
        for seed, score in zip(SEEDS, scores):
            records.append(_record("rte", method, seed, "both", score, config_hash=f"x-{method}") | {"task": "mrpc"})
    report = build_report([r | {"train_examples": 2490} for r in records])
    _, rows, csv_rows = group_trend_table(report)
    p_rte = stats.ttest_ind(KNOWN[("rte", "bitfit")], KNOWN[("rte", "full")], equal_var=False,
                            alternative="greater").pvalue
    p_wide = stats.ttest_ind(wide["bitfit"], wide["full"], equal_var=False, alternative="greater").pvalue
    z = (stats.norm.isf(p_rte) + stats.norm.isf(p_wide)) / math.sqrt(2)
    bitfit = next(r for r in csv_rows if r["method"] == "bitfit")
    assert bitfit["p_greater_than_baseline"] == pytest.approx(stats.norm.sf(z))
    assert bitfit["tasks"] == 2


def test_report_files_render_with_known_numbers(tmp_path):
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    assert "report" in EXTRA_COMMANDS
    assert main(["report", str(results), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    table4 = (out / "table4.md").read_text(encoding="utf-8")
    # std of [83,84,85,84,84] = 0.71, of [78,90,84,81,87] = 4.74, of [80..88] = 3.16
    assert "| cb | full | 3.16 (n=5) | 0.71 (n=5) | 4.74 (n=5) |" in table4
    upper = _read_csv(out / "upper_bound.csv")
    cb_full = next(r for r in upper if r["task"] == "cb" and r["method"] == "full")
    assert float(cb_full["max"]) == 88 and float(cb_full["mean"]) == 84 and float(cb_full["gap"]) == 4
    assert "| cb | full | 5 | 84.0 | 88.0 | 4.0 |" in (out / "upper_bound.md").read_text(encoding="utf-8")
    for figure in ("figure4_seed_distributions.png", "figure5_densities.png"):
        data = (out / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    page = (out / "report.md").read_text(encoding="utf-8")
    assert "LEAKY" not in page and "84.0 ± 3.2" in page and "figure4_seed_distributions.png" in page


def test_leaky_runs_are_flagged(tmp_path):
    paths = write_report(_records(leaky=True), tmp_path)
    assert "84.0 ± 3.2†" in paths["table2"].read_text(encoding="utf-8")
    assert "LEAKY" in paths["report"].read_text(encoding="utf-8")
    rows = _read_csv(paths["table2_csv"])
    assert rows[0]["leaky"] == "True"


def test_corrupt_results_line_is_named(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps(_records()[0]) + "\n{broken\n", encoding="utf-8")
    assert main(["report", str(results), "--out", str(tmp_path / "out")]) == 2
    assert "results.jsonl:2: not a JSON line" in capsys.readouterr().err
    with pytest.raises(SweepError, match="no finished runs"):
        build_report([])


def test_figures_and_tables_go_to_wandb(tmp_path):
    import wandb

    class FakeRun:
        def log(self, payload):
            self.payload = payload

    run = FakeRun()
    log_to_wandb(write_report(_records(), tmp_path), run)
    assert isinstance(run.payload["figure4"], wandb.Image) and isinstance(run.payload["figure5"], wandb.Image)
    assert isinstance(run.payload["table2"], wandb.Table)
    assert run.payload["table2"].columns[:5] == ["task", "group", "metric", "method", "seeds"]


def test_a_cell_never_mixes_two_configurations():
    # An edited sweep wrote seed 5555 of cb/bitfit with another config into the same results file.
    records = _records()
    edited = next(r for r in records if (r["task"], r["method"], r["seed"]) == ("cb", "bitfit", 5555))
    edited["config_hash"] = "edited42"
    with pytest.raises(SweepError, match=r"cb / bitfit .* config cb-bitfit .* and config edited42 .*--split-configs"):
        build_report(records)
    report = build_report(records, split_configs=True)
    labels = [m for m in report.methods if m.startswith("bitfit")]
    assert labels == ["bitfit [dev_split cb-bitfit]", "bitfit [dev_split edited42]", "bitfit"]
    assert report.cell("cb", labels[0]).values == [70, 71, 72, 73]
    assert report.cell("cb", labels[1]).values == [74]
    assert report.cell("rte", "bitfit").values == [66, 67, 68, 69, 70]  # rte/bitfit holds one config: unchanged


def test_leaky_and_non_leaky_records_are_never_averaged():
    records = _records()
    leaky = next(r for r in records if (r["task"], r["method"], r["seed"]) == ("rte", "lora", 1111))
    leaky.update(leaky=True, protocol="standard")
    mixed = r"rte / lora .*\(protocol standard, leaky\) and config rte-lora \(protocol dev_split\)"
    with pytest.raises(SweepError, match=mixed):
        build_report(records)
    report = build_report(records, split_configs=True)
    assert report.cell("rte", "lora [standard leaky rte-lora]").leaky
    assert not report.cell("rte", "lora [dev_split rte-lora]").leaky


def test_resource_groups_follow_the_examples_runs_trained_on(tmp_path):
    # RTE on a 500-example subset is a low-resource run, whatever the official train size (2,490).
    records = [dict(r, train_examples=500) if r["task"] == "rte" else r for r in _records()]
    report = build_report(records)
    assert report.groups == {"cb": "low", "rte": "low"}
    assert report.official_groups == {"cb": "low", "rte": "medium"}
    header, rows, _ = group_trend_table(report)
    assert header == ["method", "low (<1k)"]
    page = write_report(records, tmp_path)["report"].read_text(encoding="utf-8")
    assert "rte low (officially medium)" in page


def test_a_seed_twice_in_one_cell_and_failed_runs(tmp_path):
    records = _records()
    with pytest.raises(SweepError, match="seed 1111 twice"):
        build_report([*records, dict(records[0])])
    failed = {**records[0], "run_id": "cb.full.both.424242", "seed": 424242, "status": "failed", "error": "boom"}
    report = build_report([*records, failed])
    assert report.failed_runs == ["cb.full.both.424242"] and 424242 not in report.cell("cb", "full").scores
    assert "1 failed run(s)" in write_report([*records, failed], tmp_path)["report"].read_text(encoding="utf-8")


def test_records_without_a_seed_free_config_hash_are_refused():
    old = {k: v for k, v in _records()[0].items() if k != "run_hash"}
    with pytest.raises(SweepError, match="no seed-free config hash"):
        build_report([old])
