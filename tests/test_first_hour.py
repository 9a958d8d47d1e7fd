"""Issue 37, a user's first hour: each item's behaviour, and docs/errors.md's table of the review's 25 tried inputs.

The table rows (``| 7c | ... |``) hold a command, its exit code and, for exit 2, the one ``error:`` line it prints;
:func:`test_every_tried_input_gives_its_documented_outcome` runs each through :func:`pet_lightning.cli.main`.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml

from pet_lightning import PETModule
from pet_lightning.data import GlueDataModule, TaskDataModule
from tests.conftest import REPO_ROOT
from tests.helpers.trainers import quiet_trainer, real_fit_overrides

ERRORS_PAGE = REPO_ROOT / "docs" / "errors.md"
ROW = re.compile(r"^\|\s*(7[a-y]|5b)\s*\|\s*([^|]+?)\s*\|\s*(.+?)\s*\|\s*([02])\s*\|\s*(.+?)\s*\|\s*$")
CLI_COMMAND = re.compile(r"^`python cli\.py ([^`]+)`$")


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``python cli.py <args>`` in-process: (exit code, stdout, stderr)."""
    from pet_lightning.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as stop:
            code = stop.code
    return code, out.getvalue(), err.getvalue()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


# ------------------------------------------------------------------------------- the tried inputs, docs/errors.md
def tried_inputs(cli_only: bool = True) -> list[tuple[str, str, str, str, str]]:
    """The rows of the page's first-hour table; ``cli_only`` keeps those with a ``python cli.py`` command."""
    rows = [ROW.match(line) for line in ERRORS_PAGE.read_text(encoding="utf-8").splitlines()]
    rows = [m.groups() for m in rows if m]
    if not cli_only:
        return rows
    return [(n, what, CLI_COMMAND.match(c).group(1), code, out) for n, what, c, code, out in rows
            if CLI_COMMAND.match(c)]


def test_errors_page_lists_the_25_tried_inputs_of_the_review():
    ids = [row[0] for row in tried_inputs(cli_only=False)]
    assert [i for i in ids if i.startswith("7")] == [f"7{c}" for c in "abcdefghijklmnopqrstuvwxy"]
    # Only 7t (the Python API, tested below) has no command line.
    assert {row[0] for row in tried_inputs()} == set(ids) - {"7t"}


SWEEP_FILES = {
    "sweep_lorra.yaml": {"tasks": ["cb"], "methods": ["bitfit", "lorra"], "seeds": [1111], "wandb": False},
    "sweep_template.yaml": {"tasks": ["cb"], "seeds": [1111], "wandb": False,
                            "methods": {"lorra": {"config": "configs/revisiting/{task}_{method}.yaml"}}},
    "sweep_seeds.yaml": {"tasks": ["cb"], "methods": ["bitfit"], "seeds": 25},
    "sweep_case.yaml": {"tasks": ["CB"], "methods": ["LoRA"], "seeds": [1111], "wandb": False,
                        "base": {"model": {"learning_rate": "1e-3"}}},
    "study_reuse.yaml": {"study": "revisiting_table4", "tasks": ["cb"], "methods": ["bitfit"], "seeds": [1111],
                         "wandb": False, "reuse_from": ["runs/nowhere/{scale}"], "scale": "cpu"},
}


@pytest.fixture(scope="module")
def tried_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tried")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "epoch=0-step=5.ckpt").write_bytes(b"")
    (folder / "emptymodel").mkdir()
    (folder / "nodata.yaml").write_text(yaml.safe_dump({"model": {"strategy": "bitfit"}}))
    for name, settings in SWEEP_FILES.items():
        (folder / name).write_text(yaml.safe_dump(settings))
    return folder


@pytest.mark.parametrize(("number", "what", "command", "code", "outcome"), tried_inputs(), ids=lambda v: str(v)[:24])
def test_every_tried_input_gives_its_documented_outcome(number, what, command, code, outcome, tried_files, data_dir,
                                                        tmp_path, monkeypatch):
    if number == "7w":
        monkeypatch.delenv("PET_DATA_DIR", raising=False)
    # Fits run in an empty folder (Lightning may leave a config.yaml), with the repository's files by absolute path.
    monkeypatch.chdir(tmp_path)
    args = [arg.replace("{tmp}", str(tried_files)) for arg in shlex.split(command)]
    args = [str(REPO_ROOT / arg) if arg.startswith("configs/") else arg for arg in args]
    if args[0] in ("sweep", "study"):
        # Sweep files name configs/... relative to where the command starts; a study's results stay in {tmp}.
        monkeypatch.chdir(tried_files)
        monkeypatch.setattr("pet_lightning.paths.START_DIR", REPO_ROOT if args[0] == "sweep" else tried_files)
    if args[0] == "fit" and code == "0":
        args += real_fit_overrides()  # the documented outcome (a name's case, no progress bar) holds in either
    exit_code, _, stderr = run_cli(args)
    assert exit_code == int(code), (number, exit_code, stderr[-3000:])
    assert "Traceback" not in stderr, (number, stderr[-3000:])
    if code == "2":
        expected = outcome.strip("`").replace("{tmp}", str(tried_files)).split("…")[0].rstrip()
        lines = error_lines(stderr)
        assert len(lines) == 1 and lines[0].startswith(expected), (number, expected, stderr[-2000:])


# --------------------------------------------------------------------------------------- 1. export from the CLI
def test_cli_help_lists_every_command():
    code, stdout, _ = run_cli(["--help"])
    assert code == 0
    for command in ("fit", "validate", "test", "predict", "sweep", "study", "report", "audit", "export"):
        assert re.search(rf"^\s+{command}\b", stdout, re.M), command
    code, _, stderr = run_cli([])
    assert code == 2 and error_lines(stderr) == [
        "error: name a command: fit, validate, test, predict, sweep, study, audit, report, export "
        "(python cli.py --help lists them)"]


@pytest.fixture(scope="module")
def first_token_checkpoint(tiny, data_dir, tmp_path_factory) -> Path:
    """A checkpoint of a (briefly) trained BitFit module with pooler first_token, written by a Lightning fit."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    folder = tmp_path_factory.mktemp("ckpt")
    module = PETModule(backbone=tiny, task="rte", strategy="bitfit", pooler="first_token", learning_rate=1e-2,
                       init_seed=0)
    data = GlueDataModule(task="rte", data_dir=data_dir, backbone=tiny, batch_size=8, max_length=32,
                          train_subset=16, order_seed=0, protocol="dev_split")
    trainer = quiet_trainer(folder, precision="32-true", max_steps=2, limit_val_batches=1, enable_checkpointing=True,
                            callbacks=[ModelCheckpoint(dirpath=folder / "checkpoints", filename="last")])
    trainer.fit(module, datamodule=data)
    return folder / "checkpoints" / "last.ckpt"


def test_cli_export_writes_a_folder_that_reloads_with_the_checkpoints_logits(first_token_checkpoint, tmp_path):
    from pet_lightning.export import load_exported

    code, stdout, stderr = run_cli(["export", str(first_token_checkpoint), str(tmp_path / "out")])
    assert code == 0, stderr[-2000:]
    assert "load it with load_exported (pooler='first_token'" in stdout
    info = json.loads((tmp_path / "out" / "pet_lightning.json").read_text())
    assert info["module"]["pooler"] == "first_token" and info["plain"] is False
    trained = PETModule.load_from_checkpoint(first_token_checkpoint).eval()
    batch = {"input_ids": torch.randint(1000, 2000, (2, 10), generator=torch.Generator().manual_seed(0)),
             "attention_mask": torch.ones(2, 10, dtype=torch.long)}
    with torch.no_grad():
        assert torch.equal(load_exported(tmp_path / "out").eval()(batch), trained(batch))
    # What plain peft / transformers cannot represent is refused at export, in one line that says why.
    code, _, stderr = run_cli(["export", str(first_token_checkpoint), str(tmp_path / "plain"), "--plain"])
    assert code == 2 and len(error_lines(stderr)) == 1 and "Traceback" not in stderr
    assert "plain=True: plain transformers / peft cannot represent this module: pooler='first_token'" in stderr


def test_a_checkpoint_path_that_is_a_folder_says_so(first_token_checkpoint, tmp_path):
    code, _, stderr = run_cli(["export", str(first_token_checkpoint.parent), str(tmp_path / "out")])
    assert code == 2
    assert error_lines(stderr) == [f"error: checkpoint {first_token_checkpoint.parent} is a directory, not a "
                                   f"checkpoint file: pass a .ckpt file (e.g. {first_token_checkpoint})"]
    assert run_cli(["export", str(first_token_checkpoint), str(tmp_path / "exported")])[0] == 0
    code, _, stderr = run_cli(["export", str(tmp_path / "exported"), str(tmp_path / "again")])
    assert code == 2 and "is an export folder (load it with pet_lightning.export.load_exported)" in stderr


# ---------------------------------------------------------------------------------- 2. sweep base vs method files
def _sweep_with_a_method_file(tmp_path: Path) -> Path:
    (tmp_path / "rte_lora.yaml").write_text(yaml.safe_dump(
        {"trainer": {"max_epochs": 50}, "model": {"learning_rate": 1.0e-3},
         "data": {"init_args": {"max_length": 128}}}))
    sweep = {"tasks": ["rte"], "seeds": [1111], "wandb": False, "out": str(tmp_path / "out"),
             "methods": {"lora": {"config": str(tmp_path / "{task}_{method}.yaml")}, "bitfit": {}},
             "base": {"trainer": {"max_epochs": 1}, "data": {"init_args": {"train_subset": 32, "max_length": 64}}}}
    path = tmp_path / "sweep_base.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_dry_run_prints_resolved_settings_and_notes_each_base_value_a_method_file_replaces(tmp_path):
    code, stdout, stderr = run_cli(["sweep", "--config", str(_sweep_with_a_method_file(tmp_path)), "--dry-run"])
    assert code == 0, stderr
    notes = [line for line in stderr.splitlines() if "note:" in line]
    assert len(notes) == 2, stderr
    assert any("base trainer.max_epochs=1 is replaced by 1 method config file(s) (e.g. by 50 in" in n for n in notes)
    assert any("base data.init_args.max_length=64 is replaced" in n for n in notes)
    lora, bitfit = (next(line for line in stdout.splitlines() if f".{m}." in line) for m in ("lora", "bitfit"))
    # The documented order (files after base) is followed, and shown per run.
    assert "max_epochs=50" in lora and "max_length=128" in lora and "train_subset=32" in lora
    assert "max_epochs=1" in bitfit and "max_length=64" in bitfit


def test_the_protocol_docs_sweep_example_has_no_base_value_replaced_by_a_file(tmp_path, monkeypatch):
    from pet_lightning.sweeps.plan import SweepConfig, plan_runs
    from pet_lightning.sweeps.resolved import base_notes

    text = (REPO_ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(name: cb\b.*?)```", text, re.S).group(1)
    (tmp_path / "sweep_cb.yaml").write_text(example)
    monkeypatch.setattr("pet_lightning.paths.START_DIR", REPO_ROOT)
    sweep = SweepConfig.from_file(tmp_path / "sweep_cb.yaml")
    assert base_notes(sweep) == []
    assert {run.config["trainer"]["max_epochs"] for run in plan_runs(sweep)} == {20}


# ----------------------------------------------------------------------------------------------- 3. bad numbers
@pytest.mark.parametrize(("setting", "message"), [
    ({"head_learning_rate": -1e-3}, "head_learning_rate=-0.001: use a positive learning rate, or leave it unset"),
    ({"weight_decay": -0.1}, "weight_decay=-0.1: use 0 (no decay) or a positive value, e.g. 0.01"),
])
def test_negative_head_learning_rate_or_weight_decay_is_refused_in_one_line(tiny, setting, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        PETModule(backbone=tiny, **setting)
    assert "\n" not in str(err.value)


def test_train_subset_above_the_training_set_is_refused():
    from pet_lightning.data.protocol import subset

    rows = [{"idx": i, "label": i % 2, "text": f"row {i}"} for i in range(10)]
    with pytest.raises(ValueError, match=r"train_subset=11 exceeds the 10 training examples of rte under this "
                                         r"protocol: use train_subset <= 10"):
        subset(rows, 11, seed=0, task="rte")
    assert subset(rows, 10, seed=0, task="rte") == (rows, [])


def test_max_length_beyond_the_models_positions_is_refused_at_fit_start(tiny, data_dir, tmp_path):
    module = PETModule(backbone=tiny, task="rte", strategy="bitfit", init_seed=0)
    data = GlueDataModule(task="rte", data_dir=data_dir, backbone=tiny, batch_size=8, max_length=200,
                          train_subset=16, protocol="dev_split")
    with pytest.raises(ValueError, match=rf"max_length=200 exceeds the 128 positions of backbone '{re.escape(tiny)}'"
                                         r": use max_length <= 128"):
        quiet_trainer(tmp_path, precision="32-true", max_steps=1, limit_val_batches=1).fit(module, datamodule=data)


# ------------------------------------------------------------------------------------------------ 4. task case
def test_task_names_in_another_case_are_one_task_everywhere(tiny, data_dir, tmp_path):
    from pet_lightning.tasks import get_task

    assert PETModule(backbone=tiny, task="SST2").hparams.task == "sst-2" == get_task("SST2").name
    assert GlueDataModule(task="SST-2", data_dir=data_dir).hparams.task == "sst-2"
    # The hparams Lightning merges (and compares) at fit start agree, so a logger no longer refuses the pair.
    module = PETModule(backbone=tiny, task="rte", strategy="bitfit", init_seed=0)
    data = TaskDataModule(task="RTE", data_dir=data_dir, backbone=tiny, batch_size=8, max_length=32,
                          train_subset=16, protocol="dev_split")
    from lightning.pytorch.loggers import CSVLogger

    run = quiet_trainer(tmp_path, precision="32-true", max_steps=1, limit_val_batches=1, logger=CSVLogger(tmp_path))
    run.fit(module, datamodule=data)


# --------------------------------------------------------------------------------------- 5. unknown sweep method
def test_an_unknown_method_fails_the_whole_plan_before_anything_runs(tmp_path):
    from pet_lightning.sweeps.plan import SweepConfig, SweepError, plan_runs

    path = tmp_path / "sweep_lorra.yaml"
    path.write_text(yaml.safe_dump({"tasks": ["cb"], "methods": ["bitfit", "lorra"], "wandb": False,
                                    "out": str(tmp_path / "out")}))
    with pytest.raises(SweepError, match=r"sweep 'lorra', method 'lorra' \(cb\): unknown strategy 'lorra'"):
        plan_runs(SweepConfig.from_file(path))
    code, _, stderr = run_cli(["sweep", "--config", str(path)])  # a real run: refused before Ray starts
    assert code == 2 and len(error_lines(stderr)) == 1 and "nothing was run" in stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ 6. model task vs data task (Python)
def test_a_model_and_data_module_of_different_tasks_are_refused_at_fit_start(tiny, data_dir, tmp_path):
    module = PETModule(backbone=tiny, task="rte", strategy="bitfit", init_seed=0)
    data = TaskDataModule(task="mrpc", data_dir=data_dir, backbone=tiny, batch_size=8, max_length=32,
                          train_subset=16, protocol="dev_split")
    with pytest.raises(ValueError, match=r"^the model is for task 'rte' but the data module holds task 'mrpc': give "
                                         r"PETModule and the data module the same task$"):
        quiet_trainer(tmp_path, precision="32-true", max_steps=1, limit_val_batches=1).fit(module, datamodule=data)


# --------------------------------------------------------------------------------------- 7. misleading one-liners
def test_a_fractional_lora_rank_names_the_rank():
    from pet_lightning.strategies import StrategyError, build_strategy

    for name, message in (("lora", "lora r=4.5: the rank must be a positive integer"),
                          ("vera", "vera r=4.5: the rank must be a positive integer")):
        with pytest.raises(StrategyError, match=re.escape(message)):
            build_strategy(name, r=4.5)


def test_progress_bar_off_drops_a_configured_progress_bar(tiny, data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli(["fit", "--config", str(REPO_ROOT / "configs" / "quickstart.yaml"),
                               "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false",
                               f"--model.backbone={tiny}", "--trainer.logger=false", "--trainer.precision=32-true",
                               f"--data.init_args.data_dir={data_dir}", "--data.init_args.max_length=32"])
    assert code == 0, stderr[-3000:]


# ---------------------------------------------------------------------------------------------- 8. W&B and noise
def test_wandb_config_records_the_strategys_settings(tiny, tmp_path):
    from lightning.pytorch.loggers import Logger

    from pet_lightning.callbacks import StrategyFreezing

    class Capture(Logger):
        name, version = "capture", 0
        params: dict = {}

        def log_hyperparams(self, params, *args, **kwargs) -> None:
            self.params.update(params)

        def log_metrics(self, metrics, step=None) -> None:
            pass

    logger = Capture()
    module = PETModule(backbone=tiny, strategy={"name": "lora", "r": 4}, init_seed=0)
    module.trainer = quiet_trainer(tmp_path, precision="32-true", logger=logger)
    StrategyFreezing.log_report(module, module.report)
    assert logger.params["strategy/settings"]["r"] == 4
    assert logger.params["strategy/settings"] == module.strategy.config_dict()


@pytest.mark.parametrize(("strategy", "label"), [
    ("full", "full"), ({"name": "lora", "r": 4}, "lora"),
    ({"name": "peft", "config": {"class_path": "peft.IA3Config"}}, "peft-ia3"),
])
def test_the_quickstart_wandb_run_is_named_after_its_task_and_strategy(tiny, tmp_path, strategy, label, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    from pet_lightning.lightning_cli import name_wandb_runs

    monkeypatch.setenv("WANDB_MODE", "disabled")
    quickstart = yaml.safe_load((REPO_ROOT / "configs" / "quickstart.yaml").read_text())
    template = next(logger["init_args"]["name"] for logger in quickstart["trainer"]["logger"]
                    if logger["class_path"].endswith("WandbLogger"))
    logger = WandbLogger(name=template, save_dir=str(tmp_path), offline=True)
    trainer = quiet_trainer(tmp_path, precision="32-true", logger=logger)
    name_wandb_runs(trainer, PETModule(backbone=tiny, task="mrpc", strategy=strategy, init_seed=0))
    assert logger._wandb_init["name"] == f"quickstart-mrpc-{label}"  # what wandb.init receives when the run starts


def test_loading_a_model_prints_no_harmless_library_warnings_and_changes_nothing_global(tiny, capfd):
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    lora = {"name": "peft", "config": {"class_path": "peft.LoraConfig", "init_args": {
        "r": 4, "target_modules": ["query", "value"], "loftq_config": {"loftq_bits": 4, "loftq_iter": 1}}}}
    # The bar starts on whatever an earlier test left (benchmarks silence it process-wide), and ends as it was.
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            PETModule(backbone=tiny, strategy=lora, init_seed=0)
            PETModule(backbone=tiny, strategy="bitfit", init_seed=0)
        bar_after_load = hf_logging.is_progress_bar_enabled()
    finally:
        if not bar_was_on:
            hf_logging.disable_progress_bar()
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "is_gradient_checkpointing" in m or "loftq_config" in m], messages
    printed = capfd.readouterr()
    assert "LOAD REPORT" not in printed.err + printed.out and "Loading weights" not in printed.err
    # Scoped: the filter and the progress-bar switch are undone after the load.
    assert not logging.getLogger("transformers.modeling_utils").filters
    assert bar_after_load


def test_a_load_report_with_more_than_a_fresh_head_still_shows():
    import logging

    from pet_lightning.backbones import _FreshHeadReport

    def record(rows: str) -> logging.LogRecord:
        text = f"BertForSequenceClassification LOAD REPORT from: x\nKey | Status |\n---+---\n{rows}"
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, "", 0, text, None, None)

    assert not _FreshHeadReport().filter(record("classifier.bias | MISSING |\nclassifier.weight | MISSING |"))
    assert _FreshHeadReport().filter(record("classifier.bias | MISSING |\nbert.pooler.dense.bias | MISSING |"))
    assert _FreshHeadReport().filter(record("bert.extra.weight | UNEXPECTED |"))
