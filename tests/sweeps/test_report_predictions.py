"""A sweep run keeps its selected model's per-example predictions on the reported split, its record names them
(and its other files) relative to the folder of results.jsonl, with the backbone and where it ran; the file's
metric recomputed by hand equals the record's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score

from pet_lightning.reports.examples import read_predictions
from pet_lightning.sweeps import records as R
from pet_lightning.sweeps.plan import SweepConfig, plan_runs


def _sweep(folder: Path, backbone: str) -> SweepConfig:
    settings = {
        "name": "preds", "out": str(folder / "out"), "tasks": ["cb", "sts-b"], "seeds": [1], "wandb": False,
        "methods": {"bitfit": {"overrides": {"model": {"learning_rate": 1.0e-3}}}},
        "select": {"monitor": "val/loss", "patience": None}, "keep_checkpoints": True, "cpus_per_trial": 1,
        "base": {"trainer": {"max_epochs": 1, "precision": "32-true", "num_sanity_val_steps": 0},
                 "model": {"backbone": backbone},
                 "data": {"init_args": {"max_length": 64, "train_subset": 32, "batch_size": 8,
                                        "eval_batch_size": 64}}},
    }
    path = folder / "sweep_preds.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return SweepConfig.from_file(path)


@pytest.mark.slow
def test_the_reported_predictions_give_back_the_recorded_metrics(tmp_path, data_dir, tiny, monkeypatch):
    from pet_lightning.sweeps.trainable import execute

    monkeypatch.setenv("PET_DATA_DIR", data_dir)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    sweep = _sweep(tmp_path, tiny)
    threads = torch.get_num_threads()
    try:
        records = {run.task: execute(sweep, run, threads=1) for run in plan_runs(sweep)}
    finally:
        torch.set_num_threads(threads)
    out = Path(sweep.out)
    for task, record in records.items():
        for field in R.PATH_FIELDS:
            assert not Path(record[field]).is_absolute(), (task, field)
            assert (out / record[field]).is_file(), (task, field)
        assert record["backbone"] == tiny
        assert set(record["provenance"]) == {"commit", "versions", "cpu", "gpu"}
        assert set(record["provenance"]["versions"]) == {"torch", "transformers", "peft", "lightning"}
        stored = json.loads((out / "runs" / record["run_id"] / R.RECORD_FILE).read_text())
        assert stored["predictions"] == record["predictions"]
        rows = read_predictions(out / record["predictions"])[""]
        assert len(rows["idx"]) == record["report_examples"] == len(set(rows["idx"].tolist()))
    cb = read_predictions(out / records["cb"]["predictions"])[""]
    labels, preds = cb["label"].astype(int), cb["prediction"].astype(int)
    assert accuracy_score(labels, preds) == pytest.approx(records["cb"]["report"]["accuracy"], abs=1e-6)
    assert f1_score(labels, preds, average="macro") == pytest.approx(records["cb"]["report"]["macro_f1"], abs=1e-6)
    stsb = read_predictions(out / records["sts-b"]["predictions"])[""]
    report = records["sts-b"]["report"]
    assert pearsonr(stsb["prediction"], stsb["label"])[0] == pytest.approx(report["pearson"], abs=1e-5)
    assert spearmanr(stsb["prediction"], stsb["label"])[0] == pytest.approx(report["spearman"], abs=1e-5)
    assert not np.all(stsb["prediction"] == np.round(stsb["prediction"]))  # scores, not class ids


def test_an_adopted_run_brings_its_predictions_and_names_its_source_relatively(tmp_path):
    def at(name: str, methods: dict, reuse: list[str] | None = None) -> SweepConfig:
        path = tmp_path / f"sweep_{name}.yaml"
        settings = {"tasks": ["cb"], "methods": methods, "seeds": [1], "wandb": False, "out": str(tmp_path / name)}
        path.write_text(yaml.safe_dump({**settings, **({"reuse_from": reuse} if reuse else {})}))
        return SweepConfig.from_file(path)

    source = at("table", {"bitfit": {}})
    (run,) = plan_runs(source)
    predictions = source.run_dir(run.run_id) / "predictions.csv"
    predictions.parent.mkdir(parents=True)
    predictions.write_text("subset,idx,label,prediction\n,0,1,1\n", encoding="utf-8")
    made = R.ok_record(source, run, train_examples=32, report={"headline": 0.5}, config_path=f"runs/{run.run_id}/"
                       "config.yaml", checkpoint=None, predictions=f"runs/{run.run_id}/predictions.csv")
    R.append_result(source.results_path, made)
    sweep = at("figure", {"bias": {"strategy": "bitfit"}}, [str(tmp_path / "table")])
    (mine,) = plan_runs(sweep)
    assert R.adopt_reused_records(sweep, [mine]) == [mine.run_id]
    (record,) = R.load_results(sweep.results_path)
    assert record["reused_from"] == {"results": "../table/results.jsonl", "run_id": run.run_id}
    assert record["predictions"] == f"runs/{mine.run_id}/predictions.csv"
    assert (Path(sweep.out) / record["predictions"]).read_text() == predictions.read_text()
    assert record["config_path"] == f"../table/runs/{run.run_id}/config.yaml" and record["checkpoint"] is None
    assert record["provenance"] == made["provenance"]  # where it ran, not where it was adopted
    assert R.run_path(record, "predictions") == Path(sweep.out) / record["predictions"]


def test_provenance_names_code_packages_and_machine():
    found = R.provenance()
    assert found["commit"] == "unknown" or len(found["commit"].removesuffix("-dirty")) == 40
    assert found["versions"]["torch"] == torch.__version__
    assert found["cpu"]
