"""The paper scales resolve to the studies' own code (issue 36): asserted on the planned runs, nothing trains."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pet_lightning.data.protocol import PROTOCOLS
from pet_lightning.strategies import build_strategy
from pet_lightning.sweeps.plan import SweepConfig, full_config, plan_runs
from pet_lightning.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
STUDIES = ROOT / "configs" / "studies"
REVISITING_PET = ("adapter", "prefix", "lora", "bitfit")
TWO_STAGE = ("lp_ft", "eh_ft_lora", "eh_ft_pt", "eh_ft_bitfit")
FT_STYLE = ("finetuning", "top_k", "top_k_6", "top_k_12", "mixout", "child_tuning_d")


@pytest.fixture(autouse=True)
def _in_repo(in_repo):
    return in_repo


def _plan(name: str, scale: str = "paper"):
    sweep = SweepConfig.from_file(STUDIES / f"{name}.yaml", scale)
    return sweep, plan_runs(sweep)


def _cells(runs) -> dict[tuple[str, str], dict]:
    cells = {}
    for run in runs:
        cells.setdefault((run.task, run.method), run.config)
    return cells


def _strategy(config) -> dict:
    return build_strategy(config["model"]["strategy"]).config_dict()


def _callbacks(config) -> dict[str, dict]:
    return {cb["class_path"].rsplit(".", 1)[-1]: cb.get("init_args", {})
            for cb in config.get("trainer", {}).get("callbacks") or []}


# ------------------------------------------------------------------------------------------------ EH-FT
def test_eh_ft_selection_is_ours_at_paper_and_theirs_only_in_the_named_leaky_scale(tmp_path):
    honest, honest_runs = _plan("eh_ft_table1", "paper")
    leaky, leaky_runs = _plan("eh_ft_table1", "paper_leaky")
    assert (honest.protocol, honest.select) == ("dev_split", {"monitor": "val/loss", "patience": None})
    assert (leaky.protocol, leaky.select) == ("standard", {"monitor": "val/headline", "patience": None})
    assert "leaky" in leaky.deliberate_differences["selection"].lower()
    assert "paper_leaky" in honest.deliberate_differences["selection"]
    for sweep, runs, stage1 in ((honest, honest_runs, False), (leaky, leaky_runs, True)):
        two_stage = [_callbacks(config)["TwoStageTraining"] for (_, method), config in _cells(runs).items()
                     if method in TWO_STAGE]
        assert len(two_stage) == 4 * len(sweep.tasks)
        assert all(bool(args.get("select_stage1")) == stage1 for args in two_stage)
    # The leaky scale is the paper scale but for selection: same runs otherwise.
    strip = {"select_stage1"}
    for key, config in _cells(honest_runs).items():
        other = _cells(leaky_runs)[key]
        for a, b in zip(config["trainer"]["callbacks"], other["trainer"]["callbacks"]):
            assert {k: v for k, v in a.get("init_args", {}).items() if k not in strip} == {
                k: v for k, v in b.get("init_args", {}).items() if k not in strip}
        assert {**config, "data": None, "trainer": None} == {**other, "data": None, "trainer": None}
    run = leaky_runs[0]
    checkpoint = _callbacks(full_config(leaky, run, tmp_path))["SelectionCheckpoint"]
    assert (checkpoint["monitor"], checkpoint["mode"]) == ("val/headline", "max")
    assert "SelectionEarlyStopping" not in _callbacks(full_config(leaky, run, tmp_path))


def test_eh_ft_paper_logs_what_table1_reports_and_lists_its_tasks():
    sweep, runs = _plan("eh_ft_table1")
    assert sweep.tasks == ["rte", "mrpc", "cola", "sts-b", "boolq", "wic", "cb", "copa", "qnli"]
    assert sweep.table_metrics == {"mrpc": "accuracy", "cb": "accuracy"}
    for task, metric in sweep.table_metrics.items():
        assert metric in get_task(task).metrics  # every run logs it beside the headline
    epochs = {run.task: run.config["trainer"]["max_epochs"] for run in runs}
    assert epochs == {"rte": 60, "mrpc": 60, "cola": 20, "sts-b": 20, "boolq": 40, "wic": 40, "cb": 400,
                      "copa": 400, "qnli": 10}


def test_eh_ft_paper_copa_head_reads_the_first_token_without_a_pooler():
    _sweep, runs = _plan("eh_ft_table1")
    for (task, method), config in _cells(runs).items():
        assert config["model"]["head"] == "mlp", method
        assert config["model"].get("pooler", "pretrained") == ("first_token" if task == "copa" else "pretrained")


def test_eh_ft_paper_rates_biases_schedule_and_regularisers_follow_their_code():
    _sweep, runs = _plan("eh_ft_table1")
    cells = _cells(runs)
    for (task, method), config in cells.items():
        callbacks = _callbacks(config)
        assert callbacks["LearningRateSchedule"] == {"name": "sat_annealing"}, (task, method)
        rate = 3.0e-5 if task == "wic" else 1.0e-5
        if method in FT_STYLE:
            assert config["model"]["learning_rate"] == rate, (task, method)
        if method in TWO_STAGE:
            args = callbacks["TwoStageTraining"]
            assert args["learning_rate"] == rate and args["warmup_ratio"] == 0.1, (task, method)
            assert args["keep_head_bias"] == (method != "eh_ft_bitfit"), (task, method)
        if method in ("linear_probing", "lp_ft"):
            assert config["model"]["cache_features"] is False  # the head sees dropout-on features
    # PET rows keep their own rates on WiC.
    assert cells[("wic", "lora")]["model"]["learning_rate"] == 5.0e-4
    assert cells[("wic", "prefix_tuning")]["model"]["learning_rate"] == 5.0e-3
    assert {_strategy(cells[("rte", m)])["k"] for m in ("top_k", "top_k_6", "top_k_12")} == {3, 6, 12}
    mixout = _strategy(cells[("rte", "mixout")])
    assert (mixout["p"], mixout["include_head"]) == (0.7, True)
    child = cells[("rte", "child_tuning_d")]
    assert _callbacks(child)["ChildTuningFisher"] == {"dropout": True, "max_grad_norm": 1.0}
    assert child["model"]["weight_decay"] == 0.0
    for method in ("prefix_tuning", "eh_ft_pt"):
        assert cells[("boolq", method)]["data"]["init_args"]["max_length"] == 495
        assert _strategy(cells[("boolq", method)])["init_std"] == 0.01
    assert cells[("boolq", "lora")]["data"]["init_args"]["max_length"] == 512


def test_eh_ft_figure4_paper_is_stage1_on_cb():
    sweep, runs = _plan("eh_ft_figure4")
    assert sweep.tasks == ["cb"] and {run.config["trainer"]["max_epochs"] for run in runs} == {40}
    assert all("LearningRateSchedule" in _callbacks(run.config) for run in runs)


# ------------------------------------------------------------------------------------------------ Revisiting
REVISITING_WITH_FILES = ("revisiting_table2", "revisiting_figure3", "revisiting_figure4", "revisiting_table4",
                         "revisiting_table1")


@pytest.mark.parametrize("name", REVISITING_WITH_FILES)
def test_revisiting_paper_adds_what_their_trainer_did(name):
    _sweep, runs = _plan(name)
    for (task, method), config in _cells(runs).items():
        trainer, model = config["trainer"], config["model"]
        assert (trainer["precision"], trainer["gradient_clip_val"]) == ("32-true", 1.0), (task, method)
        assert model["backbone"] == "roberta-base" and trainer["max_epochs"] == 50
        if method in REVISITING_PET:
            assert model["warmup_ratio"] == 0.0, (task, method)
        strategy = _strategy(config)
        if strategy["name"] == "lora":
            assert strategy["dropout"] == 0.0
        if strategy["name"] == "adapter":
            assert (strategy["placement"], strategy["init_std"]) == ("normalised", 0.02)
        if task not in ("qnli", "qqp", "mnli"):
            assert (ROOT / f"configs/revisiting/{task}_{method}.yaml").is_file()  # nothing optional was skipped
    if name != "revisiting_table1":
        full_warmups = {task: config["model"]["warmup_ratio"] for (task, method), config in _cells(runs).items()
                        if method == "full"}
        assert full_warmups.get("rte", 0.06) == 0.06 and full_warmups.get("copa", 0.0) == 0.0  # FT keeps its own


def test_revisiting_figure3_paper_copa_ft_is_a_labelled_head_only_probe():
    sweep, runs = _plan("revisiting_figure3")
    cells = _cells(runs)
    model = cells[("copa", "full")]["model"]
    assert (model["strategy"], model["cache_features"]) == ("frozen", False)
    assert all(_strategy(cells[("copa", m)])["name"] != "frozen" for m in sweep.methods if m != "full")
    assert "head-only" in sweep.deliberate_differences["copa_probes"]
    # Only COPA's row is a probe: every other task's FT row fine-tunes.
    others = [config for (task, method), config in cells.items() if method == "full" and task != "copa"]
    assert others and all(_strategy(config)["name"] == "full" for config in others)


@pytest.mark.parametrize("name", ["revisiting_table2", "revisiting_figure4", "revisiting_table4"])
def test_revisiting_paper_copa_ft_and_bitfit_are_labelled_head_only_probes(name):
    sweep, runs = _plan(name)
    cells = _cells(runs)
    for method in ("full", "bitfit"):
        model = cells[("copa", method)]["model"]
        assert (model["strategy"], model["cache_features"]) == ("frozen", False)
    assert build_strategy(cells[("copa", "adapter")]["model"]["strategy"]).name == "adapter"
    assert "head-only" in sweep.deliberate_differences["copa_probes"]
    # The cpu scale keeps the true methods.
    _cpu, cpu_runs = _plan(name, "cpu")
    assert {build_strategy(run.config["model"]["strategy"]).name for run in cpu_runs if run.method == "full"} == {
        "full"}


def test_revisiting_paper_task_sets_and_runs_per_condition():
    table2, runs = _plan("revisiting_table2")
    assert table2.tasks == ["cb", "copa", "wsc", "rte", "mrpc", "sts-b", "wic", "boolq", "sst-2", "qnli", "qqp",
                            "mnli"]
    assert table2.table_metrics == {"cb": "macro_f1"}
    assert _plan("revisiting_figure3")[0].tasks == table2.tasks
    cells = _cells(runs)
    # The high-resource tasks have no config file: their scripts' settings come from the study file.
    assert cells[("qnli", "full")]["model"]["learning_rate"] == 1.0e-5
    assert cells[("qqp", "adapter")]["model"]["learning_rate"] == 1.0e-4
    assert _strategy(cells[("qqp", "adapter")])["reduction_factor"] == 2
    assert _strategy(cells[("mnli", "prefix")])["num_virtual_tokens"] == 32
    assert all(cells[(t, m)]["data"]["init_args"]["batch_size"] == 32 and cells[(t, m)]["trainer"]["max_epochs"] == 50
               for t in ("qnli", "qqp", "mnli") for m in ("full", "adapter", "prefix", "lora", "bitfit"))
    table4, table4_runs = _plan("revisiting_table4")
    assert len(table4.seeds) == 20 and len(table4_runs) == 20 * 3 * 5


def test_revisiting_selection_split_is_ours_by_default_and_theirs_on_request():
    sweep, _runs = _plan("revisiting_table2")
    assert sweep.protocol == "train_holdout" and "train_holdout_tail" in PROTOCOLS
    assert "train_holdout_tail" in sweep.deliberate_differences["selection_split"]
    theirs = dataclasses.replace(sweep, protocol="train_holdout_tail")
    assert {run.config["data"]["init_args"]["protocol"] for run in plan_runs(theirs)} == {"train_holdout_tail"}


def test_revisiting_table1_paper_trains_full_histories_for_per_setting_stopping():
    sweep, runs = _plan("revisiting_table1")
    assert sweep.select["patience"] is None and all(run.config["data"]["init_args"]["watch_report"] for run in runs)
    assert "patience 10" in sweep.deliberate_differences["stopping"]


def test_transferability_table1_logs_spearman_for_sts_b():
    sweep, _runs = _plan("transferability_table1")
    assert sweep.table_metrics == {"sts-b": "spearman"} and "spearman" in get_task("sts-b").metrics


def test_cell_overrides_and_table_metrics_are_checked(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ntasks: [rte]\nmethods: [full]\ncell_overrides: {rte: {lora: {}}}\n")
    with pytest.raises(Exception, match="cell_overrides / table_metrics name"):
        SweepConfig.from_file(path)
    path.write_text("name: bad\ntasks: [rte]\nmethods: [full]\ntable_metrics: {sts-b: accuracy}\n")
    with pytest.raises(Exception, match="sts-b: accuracy"):
        SweepConfig.from_file(path)


def test_deliberate_differences_travel_in_the_records_into_the_report_header(tmp_path):
    from pet_lightning.studies.layouts import write_study_report
    from pet_lightning.sweeps.records import ok_record

    sweep, runs = _plan("eh_ft_table1", "paper")
    records = []
    for run in runs:
        if run.task == "rte" and run.method in ("finetuning", "eh_ft_lora"):
            record = ok_record(sweep, run, train_examples=2490, report={"headline": 0.7, "accuracy": 0.7}, steps=10,
                               epochs=1, wall_s=1.0)
            records.append({**record, "score": 0.7, "l2_distance": 1.0})
    assert records and all(r["deliberate_differences"] == sweep.deliberate_differences for r in records)
    header = write_study_report(records, tmp_path)["report"].read_text(encoding="utf-8").split("\n## ")[0]
    assert "Deliberate differences from the study's code" in header
    for name, text in sweep.deliberate_differences.items():
        assert f"- **{name}**: {' '.join(text.split())}" in header
    # The cpu scale names none, and its records carry no such field.
    cpu, cpu_runs = _plan("eh_ft_table1", "cpu")
    assert "deliberate_differences" not in ok_record(cpu, cpu_runs[0], train_examples=8, report={"headline": 0.5})
