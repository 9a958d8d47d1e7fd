"""``cli.py study --plan``: run counts, steps per run, reused runs and the wall-time estimate, without training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from pet_lightning.studies.command import main as study_main
from pet_lightning.sweeps.cost import estimate_plan, plan_costs, time_configuration
from pet_lightning.sweeps.cost_timing import StepClock, Timing, mean_padded_tokens
from pet_lightning.sweeps.plan import SweepConfig, plan_runs

TWO_STAGE = {"class_path": "pet_lightning.callbacks.TwoStageTraining",
             "init_args": {"stage2_strategy": "full", "stage1_fraction": 0.25, "learning_rate": 1.0e-3}}


def write_study(folder: Path, data_dir: str, backbone: str = "minilm", **settings) -> Path:
    study = {
        "study": "eh_ft_table1", "name": "tiny_cost", "out": str(folder / "out"), "wandb": False,
        "tasks": ["cb", "rte"], "seeds": [1, 2], "seed_modes": ["both", "init"],
        "methods": {
            "bitfit": {},
            "eh_ft": {"strategy": "bitfit", "overrides": {"trainer": {"callbacks": [TWO_STAGE]}}},
            "capped": {"strategy": "frozen", "overrides": {"trainer": {"max_steps": 5}}},
        },
        "select": {"monitor": "val/loss", "patience": None}, "max_concurrent_trials": 2, "cpus_per_trial": 1,
        "base": {"trainer": {"max_epochs": 4, "precision": "32-true"},
                 "model": {"backbone": backbone, "learning_rate": 1.0e-3},
                 "data": {"init_args": {"data_dir": data_dir, "max_length": 32, "batch_size": 8, "train_subset": 32}}},
        "task_overrides": {"rte": {"data": {"init_args": {"train_subset": 20}}}},
    }
    study.update(settings)
    path = folder / "tiny_cost.yaml"
    path.write_text(yaml.safe_dump(study), encoding="utf-8")
    return path


# Hand computation: CB 32 examples / batch 8 = 4 steps per epoch, RTE ceil(20 / 8) = 3; 4 epochs. The two-stage
# method's stage 1 is round(0.25 * 4) = 1 epoch; the capped method stops at max_steps 5.
EXPECTED = {("cb", "bitfit"): [16], ("cb", "eh_ft"): [4, 12], ("cb", "capped"): [5],
            ("rte", "bitfit"): [12], ("rte", "eh_ft"): [3, 9], ("rte", "capped"): [5]}


def test_run_count_and_steps_per_run_equal_the_hand_computation(tmp_path, data_dir):
    sweep = SweepConfig.from_file(write_study(tmp_path, data_dir))
    runs = plan_runs(sweep)
    assert len(runs) == 2 * 3 * 2 * 2  # tasks x methods x seed modes x seeds
    costs, notes = plan_costs(sweep, runs)
    assert notes == []
    for cost in costs:
        assert cost.exact and cost.train_examples == {"cb": 32, "rte": 20}[cost.run.task]
        assert [stage.steps for stage in cost.stages] == EXPECTED[(cost.run.task, cost.run.method)]
        assert cost.state == "to do"
    # The stage-2 strategy is timed under its own key (full fine-tuning), stage 1 under the method's.
    two_stage = next(c for c in costs if c.run.method == "eh_ft")
    assert [stage.key[0] for stage in two_stage.stages] == ["bitfit", "full"]


def _record(run, **fields) -> str:
    return json.dumps({"run_id": run.run_id, "status": "ok", "run_hash": run.run_hash,
                       "config_hash": run.config_hash, **fields}) + "\n"


def test_finished_and_reusable_runs_are_counted_and_left_out_of_the_estimate(tmp_path, data_dir):
    other = tmp_path / "other"
    other.mkdir()
    sweep = SweepConfig.from_file(write_study(tmp_path, data_dir, reuse_from=[str(other)]))
    runs = plan_runs(sweep)
    Path(sweep.out).mkdir(parents=True)
    # Two runs finished here (one of them also failed earlier: the ok record wins), one identical run elsewhere.
    sweep.results_path.write_text(_record(runs[0]) + _record(runs[1], status="failed") + _record(runs[1])
                                  + _record(runs[2], status="failed"), encoding="utf-8")
    (other / "results.jsonl").write_text(_record(runs[5], run_id="elsewhere.id"), encoding="utf-8")
    # A record a killed driver never appended: the sweep recovers it from the run folder, so it is finished too.
    sweep.run_dir(runs[3].run_id).mkdir(parents=True)
    (sweep.run_dir(runs[3].run_id) / "record.json").write_text(_record(runs[3]), encoding="utf-8")
    result, text = estimate_plan(sweep, runs, step_seconds=0.5)
    assert (result.runs, result.finished, result.reusable, result.todo) == (24, 3, 1, 20)
    todo = [r for i, r in enumerate(runs) if i not in (0, 1, 3, 5)]
    steps = sum(sum(EXPECTED[(r.task, r.method)]) for r in todo)
    assert result.steps_todo == steps
    assert "total: 24 runs, 3 finished, 1 reusable, 20 to do" in text


def test_a_missing_reuse_from_folder_is_a_note_not_an_error(tmp_path, data_dir):
    sweep = SweepConfig.from_file(write_study(tmp_path, data_dir, reuse_from=[str(tmp_path / "absent")]))
    result, text = estimate_plan(sweep, plan_runs(sweep), step_seconds=1.0)
    assert result.todo == 24 and "does not exist yet" in text


def test_stated_step_seconds_give_steps_times_seconds_over_concurrency_plus_overhead(tmp_path, data_dir):
    sweep = SweepConfig.from_file(write_study(tmp_path, data_dir))
    runs = plan_runs(sweep)
    steps = sum(sum(EXPECTED[(r.task, r.method)]) for r in runs)
    result, _ = estimate_plan(sweep, runs, step_seconds=0.25)
    assert result.concurrency == 2
    assert result.seconds == pytest.approx(steps * 0.25 / 2)
    result, _ = estimate_plan(sweep, runs, step_seconds=0.25, overhead_seconds=30, concurrent=3)
    assert result.seconds == pytest.approx((steps * 0.25 + 30 * len(runs)) / 3)


def test_a_timed_run_costs_its_steps_its_build_a_validation_per_epoch_and_one_test(tmp_path, data_dir, monkeypatch):
    # The final test reads the reported split, which can be far larger than the selection split (train_holdout: 10%
    # of train selects, the whole dev set is reported), so it is timed on its own.
    sweep = SweepConfig.from_file(write_study(tmp_path, data_dir))
    runs = plan_runs(sweep)
    monkeypatch.setattr("pet_lightning.sweeps.cost.time_configuration",
                        lambda *args, **kwargs: Timing(step_s=0.5, build_s=2.0, val_s=3.0, test_s=7.0))
    result, text = estimate_plan(sweep, runs)
    costs, _ = plan_costs(sweep, runs)
    by_hand = sum(sum(stage.steps for stage in c.stages) * 0.5 + 2.0 + c.epochs * 3.0 + 7.0 for c in costs)
    assert result.seconds == pytest.approx(by_hand / result.concurrency)
    assert "one validation 3.0 s, the test 7.0 s" in text


def test_the_timed_path_times_each_distinct_configuration_once_on_the_tiny_backbone(tmp_path, data_dir, tiny):
    sweep = SweepConfig.from_file(write_study(tmp_path, data_dir, backbone=tiny, tasks=["cb"]))
    runs = plan_runs(sweep)
    result, text = estimate_plan(sweep, runs, time_steps=2)
    timed = [line for line in text.splitlines() if line.startswith("timed ")]
    # bitfit (also eh_ft's stage 1), full (eh_ft's stage 2) and frozen, CB at 32 tokens, batch 8: 3 fits, 12 runs.
    assert sorted(line.split(":")[0] for line in timed) == [
        "timed bitfit/cb/32/8", "timed frozen/cb/32/8", "timed full/cb/32/8"]
    assert result.todo == 12 and result.seconds > 0
    timing = time_configuration(sweep, runs[0], plan_costs(sweep, runs[:1])[0][0].stages[0], steps=2)
    assert timing.step_s > 0 and timing.build_s > 0 and timing.val_s > 0 and timing.test_s > 0


def test_the_study_command_prints_the_plan_and_refuses_bad_flags_in_one_line(tmp_path, data_dir, capsys):
    path = write_study(tmp_path, data_dir)
    assert study_main([str(path), "--plan", "--step-seconds", "0.5", "--overhead-seconds", "10"]) == 0
    out = capsys.readouterr().out
    # One row per (task, method): seed modes, seeds, runs, done, reused, to do, examples, batch, epochs, steps.
    assert re.search(r"\ncb\s+eh_ft\s+both,init\s+1,2\s+4\s+0\s+0\s+4\s+32\s+8\s+4\s+4\+12\s+0\.500/0\.500", out)
    assert "total: 24 runs, 0 finished, 0 reusable, 24 to do" in out
    assert not Path(tmp_path / "out" / "results.jsonl").exists()  # nothing ran
    assert study_main([str(path), "--plan", "--step-seconds", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --step-seconds -1.0") and err.count("\n") == 1


def test_the_mean_padded_batch_is_the_hand_computation():
    # Batches [0, 1] -> 2 x 7, [2, 3] -> 2 x 3, [4] -> 1 x 9; rounded up to 8: 2 x 8, 2 x 8, 1 x 16.
    lengths = [7, 5, 3, 2, 9]
    assert mean_padded_tokens([0, 1, 2, 3, 4], lengths, 2) == (14 + 6 + 9) / 3
    assert mean_padded_tokens([0, 1, 2, 3, 4], lengths, 2, multiple=8) == (16 + 16 + 16) / 3


def test_timed_steps_are_scaled_to_the_epochs_mean_batch_by_their_tokens(tmp_path, data_dir, tiny, monkeypatch):
    """Grouped by length, an epoch's first batches are its longest: a step's time is taken as proportional to its
    padded tokens, so the estimate is seconds per token x the epoch's mean padded batch."""
    import pet_lightning.sweeps.cost_timing as timing_module

    seen = {}

    real = timing_module._epoch_tokens

    def epoch_tokens(datamodule):
        lengths, order = datamodule.datasets["train"].lengths(), list(iter(datamodule.train_dataloader().sampler))
        batches = [order[i:i + 8] for i in range(0, len(order), 8)]
        seen["hand"] = sum(len(b) * max(lengths[i] for i in b) for b in batches) / len(batches)
        seen["epoch"] = real(datamodule)
        return seen["epoch"]

    clocks = []
    monkeypatch.setattr(timing_module, "_epoch_tokens", epoch_tokens)
    monkeypatch.setattr(timing_module, "StepClock", lambda warmup: clocks.append(StepClock(warmup)) or clocks[-1])
    sweep = SweepConfig.from_file(write_study(tmp_path, data_dir, backbone=tiny, tasks=["cb"],
                                              base={"trainer": {"max_epochs": 4, "precision": "32-true"},
                                                    "model": {"backbone": tiny, "learning_rate": 1.0e-3},
                                                    "data": {"init_args": {"data_dir": data_dir, "max_length": 32,
                                                                           "batch_size": 8, "train_subset": 32,
                                                                           "group_by_length": True}}}))
    runs = plan_runs(sweep)
    timing = time_configuration(sweep, runs[0], plan_costs(sweep, runs[:1])[0][0].stages[0], steps=2)
    (clock,) = clocks
    assert len(clock.steps) == 2 and all(tokens > 0 for tokens in clock.tokens)
    assert timing.step_s == pytest.approx(sum(clock.steps) / sum(clock.tokens) * seen["epoch"])
    assert seen["epoch"] == seen["hand"] and 0 < seen["epoch"] <= 8 * 32
