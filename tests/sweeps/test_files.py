"""Study files: one scale is merged over the shared settings, and the scale names its records' folder."""

from __future__ import annotations

import pytest
import yaml

from pet_lightning.paths import start_dir
from pet_lightning.sweeps.files import SweepError, apply_scale
from pet_lightning.sweeps.plan import SweepConfig, plan_runs

STUDY = {
    "study": "transferability_table1",
    "methods": {"full_ft": {"strategy": "full"}, "bitfit": {"strategy": "bitfit"}},
    "protocol": "dev_split",
    "base": {"model": {"learning_rate": 1.0e-3}, "trainer": {"max_epochs": 3}},
    "wandb": False,
    "scales": {
        "cpu": {"tasks": ["sts-b"], "seeds": 2, "base": {"trainer": {"accelerator": "cpu"}}},
        "paper": {"tasks": ["sts-b", "rte"], "seeds": 5, "methods": {"bitfit": {"overrides": {"model": {
            "learning_rate": 5.0e-4}}}}, "base": {"trainer": {"max_epochs": 10}}},
    },
}


def _write(tmp_path, data, name="study_x.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_a_scale_merges_over_the_shared_settings(tmp_path):
    path = _write(tmp_path, STUDY)
    cpu = SweepConfig.from_file(path, "cpu")
    assert (cpu.scale, cpu.study, cpu.tasks, cpu.seeds) == ("cpu", "transferability_table1", ["sts-b"], [1111, 2222])
    assert cpu.base == {"model": {"learning_rate": 1.0e-3}, "trainer": {"max_epochs": 3, "accelerator": "cpu"}}
    assert cpu.out == str(start_dir() / "runs/studies/study_x/cpu")
    paper = SweepConfig.from_file(path, "paper")
    assert paper.out == str(start_dir() / "runs/studies/study_x/paper") and paper.base["trainer"]["max_epochs"] == 10
    runs = plan_runs(paper)
    assert len(runs) == 2 * 2 * 5
    rates = {run.method: run.config["model"]["learning_rate"] for run in runs}
    assert rates == {"full_ft": 1.0e-3, "bitfit": 5.0e-4}  # the scale's method override merged into the shared one


def test_the_default_scale_is_cpu_unless_the_file_says(tmp_path):
    assert SweepConfig.from_file(_write(tmp_path, STUDY)).scale == "cpu"
    assert SweepConfig.from_file(_write(tmp_path, {**STUDY, "default_scale": "paper"})).scale == "paper"


@pytest.mark.parametrize(
    ("data", "scale", "message"),
    [
        (STUDY, "gpu", "has no scale 'gpu': choose one of cpu, paper"),
        ({k: v for k, v in STUDY.items() if k != "scales"} | {"tasks": ["rte"]}, "cpu",
         "has no `scales`: drop --scale"),
        ({**STUDY, "scales": []}, None, "`scales` must map scale names"),
    ],
)
def test_bad_scales_are_one_line_errors(tmp_path, data, scale, message):
    with pytest.raises(SweepError, match=message.replace("(", r"\(")) as info:
        SweepConfig.from_file(_write(tmp_path, data), scale)
    assert "\n" not in str(info.value)


def test_a_plain_sweep_file_is_returned_as_it_is():
    raw = {"tasks": ["rte"], "methods": ["full"]}
    assert apply_scale(raw, None, "x.yaml") is raw


def test_the_study_command_refuses_a_study_without_a_layout_and_a_plain_sweep(tmp_path):
    from pet_lightning.errors import StudyError
    from pet_lightning.studies.command import study_config

    with pytest.raises(StudyError, match="study 'table9' has no report layout: choose one of "):
        study_config(str(_write(tmp_path, {**STUDY, "study": "table9"})), "cpu")
    plain = {k: v for k, v in STUDY.items() if k not in ("scales", "study")} | {"tasks": ["rte"]}
    with pytest.raises(StudyError, match=r"names no study \(a plain sweep file\)"):
        study_config(str(_write(tmp_path, plain)), None)
    # A sweep reads the study file without knowing layouts: the study command checks it.
    assert SweepConfig.from_file(_write(tmp_path, {**STUDY, "study": "table9"}), "cpu").study == "table9"
