"""Every shipped ``fit`` config of the study folders trains end to end from the command line's code path (one batch
each), every config reads its data through the one entry point, and no study config selects and reports on the
same examples.

Real data for the tasks in the shared data; RTE's jsonl is GLUE's RTE rewritten in the SuperGLUE layout (the same
examples), ReCoRD (not in the shared data) a hand-written file in the official layout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pet_lightning.data.protocol import PROTOCOLS
from pet_lightning.lightning_cli import fit_summary as run_config
from pet_lightning.tasks import get_task
from tests.conftest import REPO_ROOT
from tests.helpers.data import record_row, write_jsonl
from tests.helpers.superglue_rte import write_rte_jsonl
from tests.helpers.trainers import real_fit_overrides

SUPERGLUE_CONFIGS = sorted(path.stem for path in (REPO_ROOT / "configs" / "superglue").glob("*.yaml"))
REVISITING_TASKS = ("boolq", "cb", "cola", "copa", "mrpc", "rte", "sts-b", "wic", "wsc")
REVISITING_METHODS = ("adalora", "adapter", "bitfit", "dora", "full", "ia3", "lora", "prefix", "prompt", "vera")
REVISITING_CONFIGS = sorted(path.stem for path in (REPO_ROOT / "configs" / "revisiting").glob("*.yaml")
                            if not path.stem.startswith("sweep_"))
STUDY_FOLDERS = ("eh_ft", "revisiting", "transferability", "studies", "diagnostics")
STUDY_FILES = sorted(path.relative_to(REPO_ROOT).as_posix() for folder in STUDY_FOLDERS
                     for path in (REPO_ROOT / "configs" / folder).glob("*.yaml"))
# eh_ft and transferability fit configs; the revisiting ones fit in test_revisiting_config_fits (study files and
# diagnostics are sweeps: tests/studies/test_study_files.py plans them).
OTHER_STUDY_CONFIGS = [path for path in STUDY_FILES
                       if path.startswith(("configs/eh_ft/", "configs/transferability/"))]
ALL_CONFIGS = sorted(path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "configs").rglob("*.yaml"))
NON_LEAKY = ("dev_split", "train_holdout", "train_holdout_tail")


def _sweep_runs(config: dict) -> list[tuple[str, str]]:
    """A sweep: one protocol, written out, for every task."""
    return [(task, config["protocol"]) for task in config["tasks"]]


def _study_runs(path: str, scales: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """(task, protocol) of each run a study file makes: a fit config's data, or every task of a sweep (of each of
    ``scales`` of a study file; None: every scale)."""
    config = yaml.safe_load((REPO_ROOT / path).read_text(encoding="utf-8"))
    if "scales" in config:  # a study file: every scale is a sweep
        from pet_lightning.sweeps.files import apply_scale

        chosen = [scale for scale in config["scales"] if scales is None or scale in scales]
        return [run for scale in chosen for run in _sweep_runs(apply_scale(config, scale, path))]
    if "tasks" in config:
        return _sweep_runs(config)
    init_args = config["data"]["init_args"]
    return [(init_args["task"], init_args.get("protocol", "standard"))]


def test_every_config_reads_its_data_through_the_one_entry_point():
    data_paths = {}
    for path in ALL_CONFIGS:
        config = yaml.safe_load((REPO_ROOT / path).read_text(encoding="utf-8")) or {}
        if "data" in config:
            data_paths[path] = config["data"]["class_path"]
    assert len(data_paths) > 100 and set(data_paths.values()) == {"pet_lightning.data.TaskDataModule"}


def test_the_non_leaky_protocols_are_every_protocol_but_standard():
    assert set(PROTOCOLS) - {"standard"} == set(NON_LEAKY)


@pytest.mark.parametrize("path", STUDY_FILES)
def test_every_study_config_uses_a_non_leaky_protocol(path):
    config = yaml.safe_load((REPO_ROOT / path).read_text(encoding="utf-8"))
    # A scale named *_leaky reproduces a study's own leaky selection on purpose (eh_ft_table1's paper_leaky).
    honest = tuple(scale for scale in config.get("scales", {}) if not scale.endswith("_leaky")) or None
    runs = _study_runs(path, scales=honest)
    assert runs and all(protocol in NON_LEAKY for _, protocol in runs), runs
    leaky = [scale for scale in config.get("scales", {}) if scale.endswith("_leaky")]
    assert all(protocol == "standard" for _, protocol in _study_runs(path, scales=tuple(leaky))) if leaky else True


@pytest.mark.parametrize("path", STUDY_FILES)
def test_every_study_config_protocol_has_what_it_needs_in_the_shared_data(path, data_dir):
    # The cpu scale of a study file runs here; its paper scale runs where the paper's data is (QQP, MNLI, ...).
    for task, protocol in _study_runs(path, scales=("cpu",)):
        spec = get_task(task)
        has_train = (Path(data_dir) / spec.benchmark / spec.folder / spec.files["train"]).is_file()
        # dev_split trains on the official train split; train_holdout carves one out of dev when there is none.
        assert has_train or protocol == "train_holdout", f"{path}: {task} has no train split for {protocol}"


def test_every_superglue_task_has_a_full_and_a_bitfit_config():
    tasks = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
    assert sorted(f"{task}_{strategy}" for task in tasks for strategy in ("bitfit", "full")) == SUPERGLUE_CONFIGS


@pytest.fixture(scope="module")
def local_roots(data_dir, tmp_path_factory) -> dict[str, str]:
    rte = tmp_path_factory.mktemp("rte")
    write_rte_jsonl(Path(data_dir), rte)
    record = tmp_path_factory.mktemp("record")
    rows = [record_row(i, [["Ann Lee"], ["Bob Ray"], ["Paris"]][i % 3]) for i in range(6)]
    for split in ("train", "val"):
        write_jsonl(record / f"superglue/ReCoRD/{split}.jsonl", rows)
    return {"rte": str(rte), "record": str(record)}


@pytest.mark.parametrize("config", SUPERGLUE_CONFIGS)
def test_superglue_config_fits(config, data_dir, local_roots, tmp_path, in_repo):
    task, strategy = config.split("_")
    subset = 12 if task == "record" else 32  # the local ReCoRD root holds 18 training candidates
    fields = run_config(f"configs/superglue/{config}.yaml",
                        ["--trainer.fast_dev_run=true", f"--data.init_args.train_subset={subset}",
                         *real_fit_overrides(), f"--data.init_args.data_dir={local_roots.get(task, data_dir)}"],
                        tmp_path)
    assert fields["strategy"] == strategy and int(fields["steps"]) == 1
    assert fields["task"] == ("superglue-rte" if task == "rte" else task)
    assert float(fields["trainable_pct"]) == (100.0 if strategy == "full" else pytest.approx(0.115, abs=0.01))
    assert any(key.startswith("best_val_") for key in fields)


def test_every_revisiting_task_has_a_config_per_method():
    expected = [f"{task}_{method}" for task in REVISITING_TASKS for method in REVISITING_METHODS]
    # SST-2 (the study's high-resource task here) has the five methods of its Tables 1-3.
    expected += [f"sst-2_{method}" for method in ("adapter", "bitfit", "full", "lora", "prefix")]
    assert sorted(expected) == REVISITING_CONFIGS


@pytest.mark.parametrize("config", REVISITING_CONFIGS)
def test_revisiting_config_fits(config, data_dir, tmp_path, in_repo):
    task, method = config.split("_")
    fields = run_config(f"configs/revisiting/{config}.yaml",
                        ["--trainer.fast_dev_run=true", "--data.init_args.train_subset=16", *real_fit_overrides(),
                         f"--data.init_args.data_dir={data_dir}"], tmp_path)
    assert fields["task"] == task and fields["strategy"] == method and int(fields["steps"]) == 1
    trainable_pct = float(fields["trainable_pct"])
    assert (trainable_pct == 100.0) if method == "full" else (0.0 < trainable_pct < 5.0)


@pytest.mark.parametrize("config", OTHER_STUDY_CONFIGS)
def test_eh_ft_and_transferability_config_fits_without_leaking(config, data_dir, tmp_path, in_repo):
    fields = run_config(config, ["--trainer.fast_dev_run=true", "--data.init_args.train_subset=16",
                                 *real_fit_overrides(),
                                 "--data.init_args.max_length=32", f"--data.init_args.data_dir={data_dir}"], tmp_path)
    assert fields["task"] == "rte" and int(fields["steps"]) == 1
    assert fields["protocol"] == "dev_split" and fields["leaky"] == "false"
