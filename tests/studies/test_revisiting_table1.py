"""Revisiting Table 1 from run histories: 1-2 vs 2-2 selection by loss and by the headline metric, paired by run;
the exact sign-flip test of the inflation, the paper's inflation beside ours, no claim where the paper shows none."""

from __future__ import annotations

import csv

import pytest

from pet_lightning.errors import StudyError
from pet_lightning.studies.revisiting_table1 import selected_scores, validation_history, write_table1
from tests.helpers.records import finding, make_record, md_rows

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


def _csv(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_table1_pairs_the_inflation_by_run_and_checks_the_tested_score(tmp_path):
    records = []
    for seed, shift in zip((1, 2, 3), (0.00, 0.02, 0.05)):
        history = [(loss, acc + shift, loss_r, acc_r + shift) for loss, acc, loss_r, acc_r in HISTORY]
        records.append(_run(tmp_path, "lora", seed, history, 100 * (0.66 + shift)))
    paths = write_table1(records, tmp_path / "out")
    rows = md_rows(paths["table1"])  # the last row of sst-2: 2-2 with headline stopping
    assert rows["sst-2"][:4] == ["lora", "3", "2-2 (accuracy)", f"{100 * (0.75 + 0.07 / 3):.1f} ± 2.5"]
    assert rows["sst-2"][4] == "not in paper"  # the paper's Table 1 is RTE
    report = paths["report"].read_text(encoding="utf-8")
    assert "max difference 0 points over 3 runs" in report
    (row,) = _csv(tmp_path / "out" / "table1.csv")
    assert float(row["inflation_loss"]) == pytest.approx(9.0)
    # Every run inflates by exactly 9 points: the exact sign-flip p is 2^-3, not the 0 a t test on no spread gives.
    assert float(row["p_loss"]) == pytest.approx(1 / 8)
    assert float(row["paper_inflation_loss"]) == pytest.approx(75.94 - 75.22) and row["paper_inflation_loss_task"] \
        == "rte"
    # Holm over the table's 2 p values (loss and headline, both 1/8).
    assert float(row["p_loss_holm"]) == pytest.approx(2 / 8)
    loss = finding(paths["report"], "selecting on the reported half (2-2) inflates it over 1-2, stopping on loss")
    # 3 runs cannot reach 0.05 (2^-3 = 0.125): underpowered, in the paper's direction, beside its +0.72.
    assert loss[1] == "**underpowered (paper's direction)**" and loss[2] == f"{1 / 8:.3g}"
    assert loss[3] == "+9.00 points" and loss[5] == f"+{75.94 - 75.22:.2f} points"


def test_the_inflation_p_value_is_the_exact_sign_flip(tmp_path):
    records = []
    for seed, extra in zip((1, 2, 3), (0.00, 0.01, -0.11)):
        history = [list(values) for values in HISTORY]
        history[2][3] += extra  # the epoch 2-2 (loss) selects reads on half 2: inflation 9, 10 and -2 points
        records.append(_run(tmp_path, "bitfit", seed, [tuple(v) for v in history], 66.0))
    write_table1(records, tmp_path / "out")
    (row,) = _csv(tmp_path / "out" / "table1.csv")
    # Of the 8 sign patterns of (9, 10, -2), two sum to 17 or more (17 itself and 21): p = 2/8.
    assert float(row["p_loss"]) == pytest.approx(2 / 8)
    assert float(row["inflation_loss"]) == pytest.approx(17 / 3)


def test_no_claim_where_the_paper_shows_no_inflation(tmp_path):
    # The paper's FT with loss stopping: 78.89 in both columns. Our full runs do not enter the loss claim.
    records = []
    for method in ("full", "lora"):
        for seed in (1, 2, 3, 4, 5, 6):
            records.append(_run(tmp_path, method, seed, HISTORY, 66.0))
    paths = write_table1(records, tmp_path / "out")
    loss = finding(paths["report"], "selecting on the reported half (2-2) inflates it over 1-2, stopping on loss")
    assert "the methods the paper shows inflating (1)" in loss[7] and loss[7].endswith("on rte")
    assert loss[1] == "**reproduces**" and loss[2] == f"{1 / 64:.3g}" and loss[5] == f"+{0.72:.2f} points"
    headline = finding(paths["report"], "selecting on the reported half (2-2) inflates it over 1-2, stopping on "
                                        "headline")
    # Both methods enter the headline claim; the paper's effect is the mean of FT's +0.34 and LoRA's +2.59.
    assert "(2)" in headline[7] and headline[5] == f"+{((79.62 - 79.28) + (77.7 - 75.11)) / 2:.2f} points"
    order = finding(paths["report"], "the least stable methods inflate most")
    assert order[1].startswith("**underpowered") and "full +7.00 (paper +0.34)" in order[7]


def test_runs_without_the_watched_report_half_are_refused(tmp_path):
    record = _run(tmp_path, "full", 1, HISTORY, 66.0)
    with pytest.raises(StudyError, match="watch_report: true"):
        selected_scores(validation_history(record), "mcc")


def test_a_run_without_its_csv_history_is_refused_naming_the_files_to_keep(tmp_path):
    record = _run(tmp_path, "full", 1, HISTORY, 66.0)
    for path in tmp_path.rglob("metrics.csv"):
        path.unlink()
    with pytest.raises(StudyError, match=r"no validation history \(runs/<id>/csv/version_\*/metrics.csv"):
        selected_scores(validation_history(record), "mcc")
