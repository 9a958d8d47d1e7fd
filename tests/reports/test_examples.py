"""The reported split example by example (pet_lightning.reports.examples) on hand-made predictions files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from pet_lightning.callbacks.report_predictions import write_predictions
from pet_lightning.reports.example_metrics import metric_subset, score
from pet_lightning.reports.examples import (
    SECTION_TITLE,
    cell_resolution,
    paired_comparison,
    read_predictions,
    resolution_section,
)
from pet_lightning.reports.verdicts import bootstrap_over_examples


def _write(folder, run, labels, predictions, subset="", **extra):
    rows = [{"subset": subset, "idx": i, "label": label, "prediction": pred,
             **{name: values[i] for name, values in extra.items()}}
            for i, (label, pred) in enumerate(zip(labels, predictions))]
    write_predictions(folder / "runs" / run / "predictions.csv", rows, [subset])
    return f"runs/{run}/predictions.csv"


def _record(task, method, seed, path, headline="accuracy", **extra):
    return {"task": task, "method": method, "seed": seed, "headline": headline, "predictions": path, **extra}


def test_metrics_recomputed_from_the_file_equal_sklearn_and_scipy(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    preds = np.where(rng.random(60) < 0.7, labels, rng.integers(0, 3, 60))
    predictions = read_predictions(tmp_path / _write(tmp_path, "a", labels.tolist(), preds.tolist()))
    assert score(predictions, "accuracy") == pytest.approx(accuracy_score(labels, preds))
    assert score(predictions, "macro_f1") == pytest.approx(f1_score(labels, preds, average="macro"))
    assert score(predictions, "mcc") == pytest.approx(matthews_corrcoef(labels, preds))
    assert score(predictions, "avg_acc_f1") == pytest.approx(
        (accuracy_score(labels, preds) + f1_score(labels, preds, average="macro")) / 2)
    binary = (labels > 0).astype(int), (preds > 0).astype(int)
    predictions = read_predictions(tmp_path / _write(tmp_path, "b", *(column.tolist() for column in binary)))
    assert score(predictions, "f1") == pytest.approx(f1_score(*binary))
    gold = rng.random(50) * 5
    guess = gold + rng.normal(0, 1, 50)
    predictions = read_predictions(tmp_path / _write(tmp_path, "c", gold.tolist(), guess.tolist()))
    assert score(predictions, "pearson") == pytest.approx(pearsonr(guess, gold)[0], abs=1e-7)
    assert score(predictions, "spearman") == pytest.approx(spearmanr(guess, gold)[0], abs=1e-7)


def test_grouped_exact_match_and_record_pick_by_hand(tmp_path):
    # Questions 7 (both answers right), 8 (one wrong), 9 (right): EM 2/3; f1a over all five answers.
    path = _write(tmp_path, "m", [1, 0, 1, 1, 0], [1, 0, 1, 0, 0], group=[7, 7, 8, 8, 9])
    predictions = read_predictions(tmp_path / path)
    assert score(predictions, "em") == pytest.approx(2 / 3)
    assert score(predictions, "f1a") == pytest.approx(f1_score([1, 0, 1, 1, 0], [1, 0, 1, 0, 0]))
    # ReCoRD: query 1 picks its second candidate (score 2.0, F1 0.5), query 2 its first (tie: the earliest, F1 1).
    path = _write(tmp_path, "r", [0, 0, 1, 0], [0, 1, 1, 1], group=[1, 1, 2, 2], score=[0.5, 2.0, 1.0, 1.0],
                  answer_f1=[1.0, 0.5, 1.0, 0.0], answer_em=[1.0, 0.0, 1.0, 0.0])
    predictions = read_predictions(tmp_path / path)
    assert score(predictions, "record_f1") == pytest.approx(0.75)
    assert score(predictions, "record_em") == pytest.approx(0.5)


def test_a_suffixed_report_key_reads_its_subset():
    assert metric_subset("accuracy_mismatched", ["", "_mismatched"]) == ("accuracy", "_mismatched")
    assert metric_subset("accuracy", ["", "_mismatched"]) == ("accuracy", "")
    assert metric_subset("avg_acc_f1", [""]) == ("avg_acc_f1", "")


def test_the_file_is_sorted_and_unique_whatever_the_batch_order(tmp_path):
    rows = [{"subset": s, "idx": i, "label": 1, "prediction": 0.25} for s, i in
            (("_mismatched", 2), ("", 3), ("", 1), ("_mismatched", 0), ("", 1))]
    path = write_predictions(tmp_path / "p.csv", rows, ["", "_mismatched"])
    assert path.read_text().splitlines() == ["subset,idx,label,prediction", ",1,1,0.25", ",3,1,0.25",
                                             "_mismatched,0,1,0.25", "_mismatched,2,1,0.25"]


def test_seeds_are_resampled_jointly_on_the_same_examples(tmp_path):
    # Seed 1 is right on the first half, seed 2 on the second: every example is right in exactly one seed, so any
    # joint resample averages to 50 exactly; resampling the seeds independently would spread it.
    labels = [1] * 40
    records = [_record("rte", "full", 1, _write(tmp_path, "s1", labels, [1] * 20 + [0] * 20)),
               _record("rte", "full", 2, _write(tmp_path, "s2", labels, [0] * 20 + [1] * 20))]
    cell = cell_resolution(records, "accuracy", tmp_path)
    assert (cell.examples, cell.points_per_example, cell.seeds) == (40, 2.5, 2)
    assert (cell.mean, cell.low, cell.high) == pytest.approx((50.0, 50.0, 50.0))


def test_one_seed_interval_is_the_plain_bootstrap_over_its_examples(tmp_path):
    rng = np.random.default_rng(3)
    labels, preds = rng.integers(0, 2, 80), rng.integers(0, 2, 80)
    records = [_record("rte", "lora", 1, _write(tmp_path, "one", labels.tolist(), preds.tolist()))]
    cell = cell_resolution(records, "accuracy", tmp_path, resamples=500, seed=4)
    low, high = bootstrap_over_examples(lambda y, p: float(np.mean(y == p)), labels, preds, resamples=500, seed=4)
    assert (cell.low, cell.high) == pytest.approx((100 * low, 100 * high))
    assert cell.low < cell.mean < cell.high


def test_grouped_tasks_count_and_resample_their_groups(tmp_path):
    path = _write(tmp_path, "g", [1, 0, 1, 1, 0, 1], [1, 0, 1, 1, 0, 1], group=[5, 5, 6, 6, 6, 9])
    cell = cell_resolution([_record("multirc", "full", 1, path, headline="avg_f1a_em")], "em", tmp_path)
    assert (cell.examples, cell.mean, cell.low, cell.high) == (3, 100.0, 100.0, 100.0)


def test_paired_comparison_counts_the_examples_only_one_method_gets_right(tmp_path):
    labels = [1, 1, 1, 1, 0, 0]
    a = [_record("rte", "full", s, _write(tmp_path, f"a{s}", labels, [1, 1, 1, 0, 0, 0])) for s in (1, 2)]
    b = [_record("rte", "bitfit", s, _write(tmp_path, f"b{s}", labels, [1, 0, 0, 1, 0, 1])) for s in (1, 2, 3)]
    paired = paired_comparison(a, b, "accuracy", tmp_path)
    assert paired.seeds == [1, 2] and paired.examples == 6
    assert paired.only_a == {1: 3, 2: 3} and paired.only_b == {1: 1, 2: 1}
    assert paired.difference == pytest.approx(100 * (5 / 6 - 3 / 6))
    assert paired.low <= paired.difference <= paired.high
    assert paired_comparison(a, [], "accuracy", tmp_path) is None


def test_the_section_is_deterministic_and_names_cells_without_predictions(tmp_path):
    labels = [0, 1] * 10
    records = [_record("rte", "full", s, _write(tmp_path, f"f{s}", labels, labels)) for s in (1, 2)]
    records += [_record("rte", "bitfit", 1, None, report_examples=20)]
    text = resolution_section(records, tmp_path)
    assert text == resolution_section(records, tmp_path)
    assert text.startswith(SECTION_TITLE)
    assert "| rte | accuracy | 20 | 5.00 | no predictions | 100.0 [100.0, 100.0] |" in text
    assert "No per-example predictions recorded for bitfit on rte." in text


def test_records_without_predictions_give_one_line_and_the_examples_they_state():
    records = [{"task": "cb", "method": "full", "seed": 1, "headline": "avg_acc_f1", "report_examples": 28}]
    text = resolution_section(records)
    assert "Per-example predictions were not recorded for these runs" in text
    assert "| cb | avg_acc_f1 | 28 | 3.57 |" in text
