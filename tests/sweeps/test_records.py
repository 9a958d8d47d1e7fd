"""results.jsonl: concurrent appends lose nothing, cut-off lines are named, ok beats failed, record fields."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import yaml

from pet_lightning.sweeps import records as R
from pet_lightning.sweeps.plan import SweepConfig, SweepError, plan_runs
from pet_lightning.tasks import get_task

WRITERS, RECORDS_EACH = 8, 50


def _append_many(path: str, writer: int) -> None:
    for i in range(RECORDS_EACH):
        # Lines larger than a pipe buffer / page: an unlocked append could interleave them.
        R.append_result(Path(path), {"run_id": f"w{writer}-{i}", "writer": writer, "i": i, "payload": "x" * 9000})


def test_eight_concurrent_writers_lose_and_corrupt_nothing(tmp_path):
    path = tmp_path / "results.jsonl"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append_many, args=(str(path), w)) for w in range(WRITERS)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert all(writer.exitcode == 0 for writer in writers)
    lines = path.read_text().splitlines()
    assert len(lines) == WRITERS * RECORDS_EACH
    parsed = [json.loads(line) for line in lines]  # every line intact
    assert {(r["writer"], r["i"]) for r in parsed} == {(w, i) for w in range(WRITERS) for i in range(RECORDS_EACH)}
    assert all(r["payload"] == "x" * 9000 for r in parsed)
    # Each writer's records stay in its own order.
    for w in range(WRITERS):
        assert [r["i"] for r in parsed if r["writer"] == w] == list(range(RECORDS_EACH))
    assert len(R.load_results(path)) == WRITERS * RECORDS_EACH


def test_a_cut_off_last_line_is_named_with_its_number_and_the_fix(tmp_path):
    path = tmp_path / "results.jsonl"
    R.append_result(path, {"run_id": "a"})
    R.append_result(path, {"run_id": "b"})
    with open(path, "a") as handle:
        handle.write('{"run_id": "c", "rep')  # a foreign writer died mid-line
    with pytest.raises(SweepError, match=r"results.jsonl:3: the last line is cut off .*: delete line 3"):
        R.load_results(path)
    with pytest.raises(SweepError, match=r"results.jsonl:3: the last line is cut off"):
        R.append_result(path, {"run_id": "d"})
    assert path.read_text().count("\n") == 2, "nothing may be glued onto the broken line"


def test_a_bad_line_in_the_middle_is_named(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"run_id": "a"}\nnot json\n{"run_id": "b"}\n')
    with pytest.raises(SweepError, match=r"results.jsonl:2: not a JSON line"):
        R.load_results(path)


def test_an_ok_record_wins_over_failed_ones_and_failed_are_optional(tmp_path):
    path = tmp_path / "results.jsonl"
    for record in ({"run_id": "a", "status": "failed", "error": "boom"}, {"run_id": "b"},
                   {"run_id": "a", "status": "ok", "score": 1.0}, {"run_id": "a", "status": "ok", "score": 2.0},
                   {"run_id": "c", "status": "failed", "error": "x"}):
        R.append_result(path, record)
    ok = {r["run_id"]: r for r in R.load_results(path)}
    assert set(ok) == {"a", "b"} and ok["a"]["score"] == 1.0 and ok["b"]["status"] == "ok"
    every = {r["run_id"]: r for r in R.load_results(path, include_failed=True)}
    assert every["c"]["status"] == "failed" and every["a"]["status"] == "ok"
    assert R.finished_ids(path) == {"a", "b"}


def _sweep(tmp_path: Path) -> SweepConfig:
    path = tmp_path / "sweep_r.yaml"
    path.write_text(yaml.safe_dump({"tasks": ["cb"], "methods": ["bitfit"], "seeds": [1, 2],
                                    "out": str(tmp_path / "out"), "wandb": False}))
    return SweepConfig.from_file(path)


def test_record_fields(tmp_path):
    sweep = _sweep(tmp_path)
    first, second = plan_runs(sweep)
    ok = R.ok_record(sweep, first, train_examples=32, report={"headline": 0.5, "accuracy": 0.6}, steps=8, epochs=2,
                     wall_s=3.0)
    assert ok["status"] == "ok" and ok["score"] == 0.5 and ok["run_hash"] == first.run_hash
    assert ok["config_hash"] == first.config_hash == second.config_hash
    assert ok["train_examples"] == 32 and ok["resource_group"] == "low"
    spec = get_task("cb")
    assert ok["official_train_size"] == spec.train_size and ok["official_resource_group"] == spec.resource_group
    bigger = R.ok_record(sweep, first, train_examples=5000, report={"headline": 0.5})
    assert bigger["resource_group"] == "medium"
    failed = R.failed_record(sweep, second, "RuntimeError: boom")
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: boom" and "score" not in failed
    assert failed["config_hash"] == first.config_hash and failed["seed"] == 2


def test_records_left_in_run_folders_are_recovered_once(tmp_path):
    sweep = _sweep(tmp_path)
    first, second = plan_runs(sweep)
    folder = sweep.run_dir(first.run_id)
    folder.mkdir(parents=True)
    record = R.ok_record(sweep, first, train_examples=32, report={"headline": 0.5})
    (folder / R.RECORD_FILE).write_text(json.dumps(record))
    assert R.recover_records(sweep, [first, second]) == [first.run_id]
    assert R.recover_records(sweep, [first, second]) == []
    assert [r["run_id"] for r in R.load_results(sweep.results_path)] == [first.run_id]


def _sweep_at(tmp_path: Path, name: str, methods: dict, seeds: list[int], **settings) -> SweepConfig:
    path = tmp_path / f"sweep_{name}.yaml"
    path.write_text(yaml.safe_dump({"tasks": ["cb"], "methods": methods, "seeds": seeds, "wandb": False,
                                    "out": str(tmp_path / name), **settings}))
    return SweepConfig.from_file(path)


def test_identical_runs_of_another_sweep_are_adopted_under_this_sweeps_identity(tmp_path):
    source = _sweep_at(tmp_path, "table", {"bitfit": {}, "full": {}}, [1, 2])
    source_runs = plan_runs(source)
    for run in source_runs[:3]:  # seed 1 (bitfit, full) and seed 2 bitfit finished there
        R.append_result(source.results_path, R.ok_record(source, run, train_examples=32,
                                                         report={"headline": 0.1 * run.seed}, wall_s=7.0))
    # Same bitfit config under another name, one seed more, and a method the source never ran.
    sweep = _sweep_at(tmp_path, "figure", {"bias_only": {"strategy": "bitfit"}, "lora": {}}, [1, 2, 3],
                      reuse_from=[str(tmp_path / "table")])
    runs = plan_runs(sweep)
    adopted = R.adopt_reused_records(sweep, runs)
    assert [run.seed for run in runs if run.run_id in adopted] == [1, 2]
    records = {r["run_id"]: r for r in R.load_results(sweep.results_path)}
    assert set(records) == set(adopted)
    first = next(run for run in runs if run.run_id == adopted[0])
    record = records[first.run_id]
    assert (record["sweep"], record["method"], record["seed"], record["score"]) == ("figure", "bias_only", 1, 0.1)
    assert record["reused_from"]["run_id"] == source_runs[0].run_id
    # Relative to this sweep's out folder: a committed folder names no machine's paths.
    assert record["reused_from"]["results"] == "../table/results.jsonl"
    assert R.adopt_reused_records(sweep, runs) == []  # adopted once; a rerun finds them finished


def test_a_missing_reuse_folder_is_refused_with_the_fix(tmp_path):
    sweep = _sweep_at(tmp_path, "figure", ["bitfit"], [1], reuse_from=[str(tmp_path / "nowhere")])
    with pytest.raises(SweepError, match="run that sweep first.*or remove"):
        R.adopt_reused_records(sweep, plan_runs(sweep))


def test_reuse_from_its_own_folder_is_refused(tmp_path):
    with pytest.raises(SweepError, match="own out folder"):
        _sweep_at(tmp_path, "same", ["bitfit"], [1], reuse_from=[str(tmp_path / "same")])
