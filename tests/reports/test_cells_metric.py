"""A report scores each task on the metric its paper's table uses, not only on the headline that selected."""

from __future__ import annotations

import pytest

from pet_lightning.reports.cells import build_report
from pet_lightning.sweeps.records import SweepError
from tests.helpers.records import make_record


def _records():
    return [make_record("sts-b", "full", seed, 80.0 + seed, "x", report={"pearson": 0.80 + seed / 100,
                                                                         "spearman": 0.70 + seed / 100})
            for seed in (1, 2)]


def test_metric_override_reads_the_reported_split_metric():
    report = build_report(_records(), baseline="full", metrics={"sts-b": "spearman"})
    assert report.cell("sts-b", "full").values == pytest.approx([71.0, 72.0])
    assert report.headline["sts-b"] == "spearman"
    plain = build_report(_records(), baseline="full")
    assert plain.cell("sts-b", "full").values == pytest.approx([81.0, 82.0])
    assert plain.headline["sts-b"] == "pearson"


def test_a_record_without_the_metric_is_one_line_naming_it():
    with pytest.raises(SweepError, match="has no 'macro_f1' on its reported split"):
        build_report(_records(), baseline="full", metrics={"sts-b": "macro_f1"})
