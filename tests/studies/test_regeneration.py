"""A study folder under docs/results/ rebuilds its report.md byte for byte from its committed records and
per-example predictions (``python cli.py report <folder>/results.jsonl --out <elsewhere>``).

No folder commits its records yet (they were not kept before issue 34; the next issue re-runs them), so the
mechanism is also exercised on a hand-made folder: records with provenance and predictions files are reported,
"committed" (results.jsonl, predictions and report.md copied elsewhere), and regenerated in a third folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pet_lightning.callbacks.report_predictions import PREDICTIONS_FILE, write_predictions
from pet_lightning.reports.example_metrics import score
from pet_lightning.reports.examples import SECTION_TITLE, read_predictions
from pet_lightning.studies.command import report_main
from pet_lightning.sweeps.records import append_result
from tests.conftest import REPO_ROOT
from tests.helpers.records import make_record

COMMITTED = sorted((REPO_ROOT / "docs" / "results").glob("*/results.jsonl"))
STUDY = "transferability_table1"
# (task, method) -> chance that a prediction is right (sst-2) or the noise of the predicted score (sts-b).
CELLS = {("sst-2", "full_ft"): 0.92, ("sst-2", "bitfit"): 0.88, ("sst-2", "frozen"): 0.7,
         ("sts-b", "full_ft"): 0.6, ("sts-b", "bitfit"): 0.8, ("sts-b", "frozen"): 1.6}
PROVENANCE = {"commit": "0123456789abcdef0123456789abcdef01234567",
              "versions": {"lightning": "2.6.6", "peft": "0.21.2", "torch": "2.13.0", "transformers": "5.23.0"},
              "cpu": "Hand-made CPU", "gpu": "Hand-made GPU 80GB"}
METRICS = {"sst-2": ("accuracy",), "sts-b": ("pearson", "spearman")}


def write_study_folder(folder: Path, study: str = STUDY, cells: dict = CELLS, seeds=(1, 2, 3), examples: int = 60,
                       provenance: dict | None = PROVENANCE, backbone: str = "minilm") -> Path:
    """A study's results folder as a sweep leaves it: results.jsonl and runs/<id>/predictions.csv, each record's
    ``report`` recomputed from its predictions; returns the results file."""
    rng = np.random.default_rng(7)
    gold = {"sst-2": rng.integers(0, 2, examples), "sts-b": np.round(rng.random(examples) * 5, 2)}
    for (task, method), quality in cells.items():
        for seed in seeds:
            labels = gold[task]
            if task == "sts-b":
                predicted = labels + rng.normal(0, quality, examples)
            else:
                predicted = np.where(rng.random(examples) < quality, labels, 1 - labels)
            run_id = f"{task}.{method}.both.{seed}"
            path = f"runs/{run_id}/{PREDICTIONS_FILE}"
            rows = [{"subset": "", "idx": 3 * i + 1, "label": label.item(), "prediction": value.item()}
                    for i, (label, value) in enumerate(zip(labels, predicted))]
            write_predictions(folder / path, rows, [""])
            predictions = read_predictions(folder / path)
            report = {key: score(predictions, key) for key in METRICS[task]}
            report["headline"] = report[METRICS[task][0]]
            record = make_record(task, method, seed, 100 * report["headline"], study, report=report,
                                 predictions=path, backbone=backbone, report_examples=examples,
                                 config_path=f"runs/{run_id}/config.yaml")
            if provenance is not None:
                record["provenance"] = provenance
            append_result(folder / "results.jsonl", record)
    return folder / "results.jsonl"


def regenerated(results: Path, out: Path) -> bytes:
    assert report_main([str(results), "--out", str(out)]) == 0
    return (out / "report.md").read_bytes()


@pytest.mark.parametrize("results", COMMITTED, ids=[path.parent.name for path in COMMITTED])
def test_every_committed_study_folder_rebuilds_its_report_byte_for_byte(results, tmp_path):
    assert regenerated(results, tmp_path / "again") == (results.parent / "report.md").read_bytes()


def test_a_committed_folder_rebuilds_byte_for_byte_elsewhere(tmp_path, capsys):
    made = write_study_folder(tmp_path / "made")
    first = regenerated(made, tmp_path / "made" / "report")
    # Commit-like: only the records, the predictions and the report travel (no configs, no checkpoints).
    committed = tmp_path / "docs" / "results" / STUDY
    for source in [made, *made.parent.glob(f"runs/*/{PREDICTIONS_FILE}")]:
        target = committed / source.relative_to(made.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    (committed / "report.md").write_bytes(first)
    assert regenerated(committed / "results.jsonl", tmp_path / "elsewhere") == first
    text = first.decode()
    # The header names what the records say the runs came from, not this machine.
    assert "code at commit 0123456789ab" in text and "GPU Hand-made GPU 80GB, CPU Hand-made CPU" in text
    assert "torch 2.13.0, transformers 5.23.0, peft 0.21.2, lightning 2.6.6" in text
    assert "backbone minilm" in text
    assert text.count(SECTION_TITLE) == 1
    resolution = text[text.index(SECTION_TITLE):]
    assert "| sst-2 | accuracy | 60 | 1.67 |" in resolution
    assert "not recorded" not in resolution


def test_records_from_before_issue_34_still_report_and_say_what_they_lack(tmp_path):
    made = write_study_folder(tmp_path / "old", provenance=None, backbone=None)
    for predictions in made.parent.glob(f"runs/*/{PREDICTIONS_FILE}"):
        predictions.unlink()
    text = regenerated(made, tmp_path / "report").decode()
    assert "Provenance: not recorded (the 18 records are from before issue 34)." in text
    assert "backbone ?" in text
    assert "Per-example predictions were not recorded for these runs" in text


def test_the_header_counts_runs_per_provenance_and_names_records_without_one():
    from pet_lightning.studies.common import provenance_text

    cpu = {**PROVENANCE, "commit": PROVENANCE["commit"] + "-dirty", "gpu": None}
    records = [{"provenance": PROVENANCE}] * 3 + [{"provenance": cpu}] + [{}]
    assert provenance_text(records) == (
        "Provenance (from the records): 3 runs: code at commit 0123456789ab; torch 2.13.0, transformers 5.23.0, "
        "peft 0.21.2, lightning 2.6.6; machine GPU Hand-made GPU 80GB, CPU Hand-made CPU / 1 run: code at commit "
        "0123456789ab with uncommitted changes; torch 2.13.0, transformers 5.23.0, peft 0.21.2, lightning 2.6.6; "
        "machine CPU Hand-made CPU; 1 of 5 runs carry none (recorded before issue 34).")
    assert provenance_text([{"provenance": PROVENANCE}]) == (
        "Provenance (from the records): code at commit 0123456789ab; torch 2.13.0, transformers 5.23.0, peft 0.21.2, "
        "lightning 2.6.6; machine GPU Hand-made GPU 80GB, CPU Hand-made CPU.")


def test_the_generic_sweep_report_has_the_resolution_section_too(tmp_path):
    made = write_study_folder(tmp_path / "made")
    assert report_main([str(made), "--out", str(tmp_path / "sweep"), "--layout", "sweep"]) == 0
    text = (tmp_path / "sweep" / "report.md").read_text(encoding="utf-8")
    assert text.count(SECTION_TITLE) == 1
    # The generic tables score the headline (STS-B Pearson): the section follows them.
    assert "| sts-b | pearson | 60 | 1.67 |" in text
