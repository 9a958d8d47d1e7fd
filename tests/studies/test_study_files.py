"""Each study file in configs/studies/ expands to the grid its paper table needs, at both scales."""

from __future__ import annotations

from pathlib import Path

import pytest

from pet_lightning.strategies import build_strategy
from pet_lightning.sweeps.plan import SweepConfig, full_config, plan_runs

ROOT = Path(__file__).resolve().parents[2]
STUDIES = ROOT / "configs" / "studies"


@pytest.fixture(autouse=True)
def _in_repo(in_repo):
    """Study files name their method configs relative to the repository root."""


def _plan(name: str, scale: str):
    sweep = SweepConfig.from_file(STUDIES / f"{name}.yaml", scale)
    return sweep, plan_runs(sweep)


def _rows(runs):
    """method -> the config of its first run (every run of a method shares it, seeds aside)."""
    rows = {}
    for run in runs:
        rows.setdefault(run.method, run.config)
    return rows


def _strategy(config):
    return build_strategy(config["model"]["strategy"]).config_dict()


def _callbacks(config):
    return [cb["class_path"].rsplit(".", 1)[-1] for cb in config.get("trainer", {}).get("callbacks") or []]


@pytest.mark.parametrize(("scale", "tasks", "seeds"), [("cpu", 2, 5), ("paper", 8, 5)])
def test_transferability_table1_grid(scale, tasks, seeds):
    sweep, runs = _plan("transferability_table1", scale)
    assert (sweep.study, sweep.scale, len(sweep.tasks), len(sweep.seeds)) == ("transferability_table1", scale,
                                                                               tasks, seeds)
    assert len(runs) == 9 * tasks * seeds
    rows = _rows(runs)
    assert list(rows) == ["full_ft", "feed_forward", "multi_head", "layernorms", "layernorms_a", "layernorms_f",
                          "bitfit", "random", "frozen"]
    names = {method: _strategy(config)["name"] for method, config in rows.items()}
    assert names == {"full_ft": "full", "feed_forward": "ffn", "multi_head": "attention", "layernorms": "layernorm",
                     "layernorms_a": "layernorm", "layernorms_f": "layernorm", "bitfit": "bitfit",
                     "random": "random", "frozen": "frozen"}
    assert [_strategy(rows[m])["where"] for m in ("layernorms", "layernorms_a", "layernorms_f")] == [
        "all", "attention", "ffn"]
    assert "ExactLinearProbe" in _callbacks(rows["frozen"]) and rows["frozen"]["trainer"]["max_epochs"] == 1
    assert all("CollapseGuard" in _callbacks(config) for method, config in rows.items() if method != "frozen")
    rates = {method: config["model"]["learning_rate"] for method, config in rows.items()}
    pet = 5.0e-3 if scale == "cpu" else 1.0e-3
    assert rates["layernorms"] == rates["bitfit"] == rates["random"] == pet
    assert rates["full_ft"] == (5.0e-5 if scale == "cpu" else 2.0e-5)
    assert all(config["model"]["regression_bias"] == "label_mean" for config in rows.values())
    assert sweep.protocol == "dev_split"


@pytest.mark.parametrize(("scale", "layers", "tasks", "seeds"), [("cpu", 6, ["sts-b"], 6),
                                                                 ("paper", 12, ["cola", "mrpc", "sts-b", "rte"], 5)])
def test_transferability_table3_tunes_one_layer_per_row(scale, layers, tasks, seeds):
    sweep, runs = _plan("transferability_table3", scale)
    assert sweep.tasks == tasks and len(runs) == (layers + 1) * len(tasks) * seeds
    rows = _rows(runs)
    assert list(rows) == [f"layer_{k}" for k in range(1, layers + 1)] + ["full_ft"]
    for k in range(1, layers + 1):
        strategy = _strategy(rows[f"layer_{k}"])
        assert (strategy["name"], strategy["layers"], strategy["where"]) == ("layernorm", [k - 1], "all")
    assert _strategy(rows["full_ft"])["name"] == "full"


def test_the_cpu_scales_run_in_32_true_where_bf16_would_be_emulated():
    """The re-designed cpu scales name 32-true: a bf16-mixed step is 15x slower on an AVX2-only CPU."""
    for name in ("transferability_table3", "revisiting_table1", "revisiting_iterations"):
        _sweep, runs = _plan(name, "cpu")
        assert {run.config["trainer"]["precision"] for run in runs} == {"32-true"}, name


def test_transferability_table3_cpu_trains_its_own_full_ft_column():
    """Table 1's Full-FT records ran in bf16-mixed: Table 3's cpu scale trains its Full-FT seeds itself."""
    sweep, runs = _plan("transferability_table3", "cpu")
    assert not sweep.reuse_from
    assert sorted(run.seed for run in runs if run.method == "full_ft") == [1111, 2222, 3333, 4444, 5555, 6666]


EH_FT_ROWS = ["finetuning", "linear_probing", "prefix_tuning", "lora", "bitfit", "top_k", "mixout", "child_tuning_d",
              "lp_ft", "eh_ft_lora", "eh_ft_pt", "eh_ft_bitfit"]
CPU_EH_FT_ROWS = ["finetuning", "linear_probing", "lp_ft", "eh_ft_lora", "eh_ft_pt", "eh_ft_bitfit"]
TWO_STAGE = {"lp_ft": "frozen", "eh_ft_lora": "lora", "eh_ft_pt": "prefix", "eh_ft_bitfit": "bitfit"}


@pytest.mark.parametrize(("scale", "tasks", "seeds", "stage2_rate"), [("cpu", 2, 6, 5.0e-5), ("paper", 9, 4, 1.0e-5)])
def test_eh_ft_table1_grid_head_and_two_stage_rows(scale, tasks, seeds, stage2_rate):
    sweep, runs = _plan("eh_ft_table1", scale)
    # The cpu scale runs the rows of the main claim; the paper scale all of Table 1's, with Top-K rows for K = 6
    # and 12 (tests/studies/test_paper_scales.py checks its settings).
    expected = CPU_EH_FT_ROWS if scale == "cpu" else EH_FT_ROWS + ["top_k_6", "top_k_12"]
    assert len(runs) == len(expected) * tasks * seeds and len(sweep.seeds) == seeds
    rows = _rows(runs)
    assert sorted(rows) == sorted(expected)
    for method, config in rows.items():
        model = config["model"]
        assert (model["head"], model["head_hidden_size"], model["head_init_std"]) == ("mlp", 2048, 0.005), method
        two_stage = [cb for cb in config["trainer"]["callbacks"] if cb["class_path"].endswith("TwoStageTraining")]
        if method in TWO_STAGE:
            assert _strategy(config)["name"] == TWO_STAGE[method]
            (callback,) = two_stage
            args = callback["init_args"]
            keep = scale == "paper" and method != "eh_ft_bitfit"  # the study's code, per row
            assert (args["stage2_strategy"], args["stage1_fraction"], args["keep_head_bias"]) == ("full", 0.1, keep)
            assert args["learning_rate"] == stage2_rate
        else:
            assert not two_stage, method
    assert rows["finetuning"]["model"]["learning_rate"] == stage2_rate
    if scale == "paper":
        assert _strategy(rows["child_tuning_d"])["reserve_p"] == 0.1
        assert _strategy(rows["mixout"])["p"] == 0.7
    else:
        # 10 epochs: stage 1 is one of them, 10% as in the study's code; every row trains as many steps.
        assert {config["trainer"]["max_epochs"] for config in rows.values()} == {10}
        assert sweep.protocol == "train_holdout"


def test_eh_ft_paper_scale_uses_the_studys_epochs_per_task():
    _sweep, runs = _plan("eh_ft_table1", "paper")
    epochs = {run.task: run.config["trainer"]["max_epochs"] for run in runs}
    assert epochs == {"rte": 60, "mrpc": 60, "cola": 20, "sts-b": 20, "boolq": 40, "wic": 40, "cb": 400, "copa": 400,
                      "qnli": 10}


def test_eh_ft_figure4_saves_head_features_of_each_stage1_run(tmp_path):
    sweep, runs = _plan("eh_ft_figure4", "cpu")
    assert [run.method for run in runs] == ["linear_probing", "lora", "bitfit", "prefix_tuning"]
    for run in runs:
        config = full_config(sweep, run, tmp_path / run.run_id)
        assert "HeadFeatures" in _callbacks(config) and "SelectionCheckpoint" in _callbacks(config)
        assert config["model"]["head"] == "mlp" and config["trainer"]["max_epochs"] == 1


def test_the_sweep_keeps_study_callbacks_beside_its_selection(tmp_path):
    sweep, runs = _plan("eh_ft_table1", "cpu")
    run = next(run for run in runs if run.method == "eh_ft_lora")
    assert _callbacks(full_config(sweep, run, tmp_path)) == [
        "CollapseGuard", "TwoStageTraining", "SelectionCheckpoint", "ResumeCheckpoints"]


REVISITING = {  # study file -> (cpu runs, paper runs)
    "revisiting_table1": (25, 100), "revisiting_table2": (100, 1200), "revisiting_table4": (75, 300),
    "revisiting_figure3": (40, 480), "revisiting_figure4": (25, 400), "revisiting_figure5": (45, 180),
    "revisiting_iterations": (120, 120),
}


@pytest.mark.parametrize("name", sorted(REVISITING))
def test_revisiting_study_files_expand_to_their_grids(name):
    for scale, expected in zip(("cpu", "paper"), REVISITING[name]):
        sweep, runs = _plan(name, scale)
        assert (sweep.study, len(runs)) == (name, expected), scale
        assert sweep.protocol in ("dev_split", "train_holdout")
        for run in runs:
            backbone = run.config["model"]["backbone"]
            assert backbone == ("minilm" if scale == "cpu" else "roberta-base"), (scale, run.run_id)


# study file -> its runs Table 2 already trains, per scale: they are reused, not trained again.
REUSED_FROM_TABLE2 = {
    "revisiting_figure3": {"cpu": 40, "paper": 480}, "revisiting_figure4": {"cpu": 25, "paper": 400},
    "revisiting_table4": {"cpu": 35, "paper": 110}, "revisiting_figure5": {"cpu": 10, "paper": 0},
}


@pytest.mark.parametrize("name", sorted(REUSED_FROM_TABLE2))
def test_revisiting_files_reuse_exactly_table2s_identical_runs(name):
    for scale, expected in REUSED_FROM_TABLE2[name].items():
        table2, table2_runs = _plan("revisiting_table2", scale)
        sweep, runs = _plan(name, scale)
        identical = {(run.run_hash, run.config_hash) for run in table2_runs}
        shared = [run for run in runs if (run.run_hash, run.config_hash) in identical]
        assert len(shared) == expected, scale
        # A file reuses Table 2 exactly when it shares runs with it: the same folder the Table 2 study writes.
        assert sweep.reuse_from == ([table2.out] if expected else []), scale


def test_revisiting_paper_scale_takes_the_studys_per_task_settings():
    _sweep, runs = _plan("revisiting_table2", "paper")
    rates = {(run.task, run.method): run.config["model"]["learning_rate"] for run in runs}
    # From the study's scripts (configs/revisiting/<task>_<method>.yaml, summarised in shared/notes/anchors.md).
    assert rates[("sst-2", "full")] == 1.0e-5 and rates[("sst-2", "prefix")] == 1.0e-2
    assert rates[("rte", "lora")] == 1.0e-3 and rates[("cb", "full")] == 5.0e-5
    assert {run.config["data"]["init_args"]["protocol"] for run in runs} == {"train_holdout"}


def test_revisiting_table4_varies_each_seed_source():
    sweep, runs = _plan("revisiting_table4", "cpu")
    assert sweep.seed_modes == ["both", "init", "order"]
    init_only = {(run.init_seed, run.order_seed) for run in runs if run.seed_mode == "init"}
    assert {order for _, order in init_only} == {sweep.fixed_seed} and len(init_only) == 5


def test_revisiting_figure5_sizes_grow_the_parameter_count():
    _sweep, runs = _plan("revisiting_figure5", "cpu")
    rows = _rows(runs)
    assert [_strategy(rows[f"adapter_{s}"])["reduction_factor"] for s in ("small", "medium", "large")] == [64, 16, 2]
    assert [_strategy(rows[f"lora_{s}"])["r"] for s in ("small", "medium", "large")] == [2, 8, 32]


def test_revisiting_iterations_match_the_steps_of_twice_the_data():
    _sweep, runs = _plan("revisiting_iterations", "cpu")
    rows = _rows(runs)
    steps = {m: rows[m]["data"]["init_args"]["train_subset"] * rows[m]["trainer"]["max_epochs"] for m in rows}
    assert steps["full@1k_long"] == steps["full@2k"] == 2 * steps["full@1k"]
    assert rows["full@1k"]["data"]["init_args"]["train_subset"] == 1000


def test_revisiting_table1_watches_the_reported_half():
    for scale in ("cpu", "paper"):
        _sweep, runs = _plan("revisiting_table1", scale)
        assert all(run.config["data"]["init_args"]["watch_report"] for run in runs)
