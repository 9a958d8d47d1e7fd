"""Revisiting Table 1 from run histories: 1-2 vs 2-2 selection by loss and by the headline metric, paired by run."""

from __future__ import annotations

import csv

import pytest
from scipy import stats

from pet_lightning.studies.common import REPRODUCES
from pet_lightning.studies.revisiting import selected_scores, validation_history, write_table1
from pet_lightning.sweeps.files import SweepError
from tests.studies.records import make_record, md_rows

FIELDS = ["epoch", "step", "val/loss", "val/accuracy", "val/loss_report", "val/accuracy_report"]


def _run(tmp_path, method, seed, history, score, versions=None):
    """A record whose run folder holds CSV-logger histories: ``history`` = [(loss, acc, loss_r, acc_r)] per epoch."""
    folder = tmp_path / f"{method}.{seed}"
    for version, rows in (versions or {0: list(enumerate(history))}).items():
        path = folder / "csv" / f"version_{version}" / "metrics.csv"
        path.parent.mkdir(parents=True)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            for epoch, values in rows:
                writer.writerow({"epoch": epoch, "step": 10 * (epoch + 1)})  # a training row without val metrics
                writer.writerow(dict(zip(FIELDS, [epoch, 10 * (epoch + 1), *values])))
    (folder / "config.yaml").write_text("model: {}\n", encoding="utf-8")
    return make_record("sst-2", method, seed, score, "revisiting_table1", config_path=str(folder / "config.yaml"))


# Epoch 0 is best on half 1 by loss, epoch 1 by accuracy; epoch 2 is best on half 2 by both.
HISTORY = [(0.50, 0.70, 0.60, 0.66), (0.55, 0.74, 0.58, 0.68), (0.60, 0.72, 0.52, 0.75)]


def test_each_setting_reads_the_reported_half_at_its_selected_epoch(tmp_path):
    record = _run(tmp_path, "full", 1, HISTORY, 66.0)
    scores = selected_scores(validation_history(record), "accuracy")
    assert scores == {("1-2", "loss"): pytest.approx(66.0), ("1-2", "headline"): pytest.approx(68.0),
                      ("2-2", "loss"): pytest.approx(75.0), ("2-2", "headline"): pytest.approx(75.0)}


def test_a_resumed_runs_later_csv_version_wins(tmp_path):
    rows = list(enumerate(HISTORY))
    record = _run(tmp_path, "full", 1, HISTORY, 66.0,
                  versions={0: rows[:2] + [(2, (0.9, 0.1, 0.9, 0.1))], 1: rows[2:]})
    assert validation_history(record)[2]["val/accuracy_report"] == pytest.approx(0.75)


def test_table1_pairs_the_inflation_by_run_and_checks_the_tested_score(tmp_path):
    records, honest, leaky = [], [], []
    for seed, shift in zip((1, 2, 3), (0.00, 0.02, 0.05)):
        history = [(loss, acc + shift, loss_r, acc_r + shift) for loss, acc, loss_r, acc_r in HISTORY]
        records.append(_run(tmp_path, "lora", seed, history, 100 * (0.66 + shift)))
        honest.append(100 * (0.66 + shift))
        leaky.append(100 * (0.75 + shift))
    paths = write_table1(records, tmp_path / "out")
    rows = md_rows(paths["table1"])
    assert rows["sst-2"][:3] == ["lora", "3", "68.3 ± 2.5"]
    report = paths["report"].read_text(encoding="utf-8")
    assert "max difference 0 points over 3 runs" in report
    with open(tmp_path / "out" / "table1.csv", encoding="utf-8") as handle:
        (row,) = csv.DictReader(handle)
    assert float(row["inflation_loss"]) == pytest.approx(9.0)
    # Every run inflates by exactly 9 points: no spread, the strongest evidence.
    assert float(row["p_loss"]) == pytest.approx(0.0, abs=1e-12)
    finding = next(line for line in report.splitlines() if "stopping on loss" in line)
    assert f"**{REPRODUCES}**" in finding


def test_the_inflation_p_value_is_scipys_paired_test(tmp_path):
    records, honest, leaky = [], [], []
    for seed, extra in zip((1, 2, 3), (0.00, 0.01, 0.03)):
        history = [list(values) for values in HISTORY]
        history[2][3] += extra  # the epoch 2-2 selects reads higher on half 2: inflation 9, 10, 12 points
        records.append(_run(tmp_path, "bitfit", seed, [tuple(v) for v in history], 66.0))
        honest.append(66.0)
        leaky.append(100 * (0.75 + extra))
    write_table1(records, tmp_path / "out")
    with open(tmp_path / "out" / "table1.csv", encoding="utf-8") as handle:
        (row,) = csv.DictReader(handle)
    expected = stats.ttest_rel(leaky, honest, alternative="greater").pvalue
    assert float(row["p_loss"]) == pytest.approx(expected)
    assert float(row["inflation_loss"]) == pytest.approx(10.333, abs=1e-3)


def test_runs_without_the_watched_report_half_are_refused(tmp_path):
    record = _run(tmp_path, "full", 1, HISTORY, 66.0)
    with pytest.raises(SweepError, match="watch_report: true"):
        selected_scores(validation_history(record), "mcc")
