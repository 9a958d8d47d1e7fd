"""Checkpoints: loads rebuild from the pretrained source, atomic writes, refused files (pet_lightning.checkpoint_io,
pet_lightning.checkpoint_format)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from pet_lightning import PETModule
from pet_lightning.callbacks import TwoStageTraining
from pet_lightning.checkpoint_io import AtomicCheckpointIO, CheckpointError, load_checkpoint_file
from tests.conftest import REPO_ROOT
from tests.helpers.data import probe_batch, small_glue
from tests.helpers.faults import Faults, install_faulty_checkpoint_io
from tests.helpers.trainers import quiet_trainer

# Real RTE at 32 tokens, 32 training examples, the dev split halved into selection and report.
DATA = dict(train_subset=32, protocol="dev_split")


FRESH_PROCESS_LOGITS = """
import sys, torch
from pet_lightning import PETModule
from tests.helpers.data import probe_batch
module = PETModule.load_from_checkpoint(sys.argv[1]).eval()
with torch.no_grad():
    torch.save(module(probe_batch(module.backbone_name)), sys.argv[2])
"""


def test_stage1_checkpoint_loaded_into_the_trained_module_equals_a_fresh_process(data_dir, tiny, tmp_path):
    """Issue 13.2(a): after a two-stage fit, the live module holds the stage-2 backbone; loading the stage-1
    checkpoint into it must give the stage-1 model (frozen tensors from the pretrained source), exactly what a
    fresh process loading the same file computes."""
    L.seed_everything(0)
    module = PETModule(backbone=tiny, task="rte", strategy={"name": "lora", "r": 4}, learning_rate=1e-2,
                       init_seed=0)
    epochs = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    trainer = quiet_trainer(tmp_path, precision="32-true", limit_val_batches=1, enable_checkpointing=True,
                            max_epochs=2, callbacks=[TwoStageTraining(stage1_epochs=1, learning_rate=1e-2), epochs])
    trainer.fit(module, datamodule=small_glue(data_dir, backbone=tiny, **DATA))
    stage1 = tmp_path / "ckpt" / "epoch=0.ckpt"
    batch = probe_batch(tiny)
    with torch.no_grad():
        stage2_logits = module.eval()(batch)

    trainer.test(module, datamodule=small_glue(data_dir, backbone=tiny, **DATA), ckpt_path=str(stage1), verbose=False)
    with torch.no_grad():
        live_logits = module.eval()(batch)
    out = tmp_path / "fresh_logits.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS_LOGITS, str(stage1), str(out)], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh_logits = torch.load(out, weights_only=True)

    assert module.strategy.name == "lora"
    assert not torch.allclose(stage2_logits, fresh_logits, atol=1e-4)  # stage 2 did move the model
    assert torch.equal(live_logits, fresh_logits), (live_logits, fresh_logits)


def _fit_briefly(data_dir: str, tiny: str, tmp_path, strategy="bitfit") -> tuple[PETModule, L.Trainer]:
    module = PETModule(backbone=tiny, task="rte", strategy=strategy, learning_rate=1e-2, init_seed=0)
    trainer = quiet_trainer(tmp_path, precision="32-true", limit_val_batches=1, max_steps=2)
    trainer.fit(module, datamodule=small_glue(data_dir, backbone=tiny, **DATA))
    return module, trainer


def test_a_write_failing_part_way_leaves_the_previous_checkpoint_intact(data_dir, tiny, tmp_path):
    module, trainer = _fit_briefly(data_dir, tiny, tmp_path)
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO  # installed by the module
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()
    install_faulty_checkpoint_io(trainer, Faults(oserror_in_write=trainer.global_step))
    with pytest.raises(OSError, match="No space left on device"):
        trainer.save_checkpoint(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.ckpt")] == []  # no temp file left
    reloaded = PETModule.load_from_checkpoint(path)
    for name, param in module.model.named_parameters():
        assert torch.equal(param, dict(reloaded.model.named_parameters())[name]), name


def _state(module: PETModule) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _assert_unchanged(module: PETModule, before: dict[str, torch.Tensor]) -> None:
    after = module.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_refused_files_give_one_line_naming_the_file_and_never_load_partly(data_dir, tiny, tmp_path):
    module, trainer = _fit_briefly(data_dir, tiny, tmp_path)
    good = tmp_path / "good.ckpt"
    trainer.save_checkpoint(good)
    data = good.read_bytes()
    checkpoint = torch.load(good, weights_only=True)

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all" * 100)
    pickled = tmp_path / "pickled.ckpt"
    torch.save({**checkpoint, "extra": _Opaque()}, pickled)
    for path, words in ((truncated, "is truncated or corrupt"), (garbage, "is truncated or corrupt"),
                        (pickled, "holds pickled Python objects")):
        with pytest.raises(CheckpointError, match=words) as caught:
            load_checkpoint_file(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
        with pytest.raises(CheckpointError, match=words):
            PETModule.load_from_checkpoint(path)

    def refused(edit, *module_args, **module_kwargs) -> str:
        bad = tmp_path / "bad.ckpt"
        changed = torch.load(good, weights_only=True)
        edit(changed)
        torch.save(changed, bad)
        target = PETModule(*module_args, **module_kwargs)
        before = _state(target)
        with pytest.raises(CheckpointError) as caught:
            # The data match the target module's task, so the refusal is the checkpoint's, not the data's.
            data = small_glue(data_dir, module_kwargs.get("task", "rte"), backbone=tiny, **DATA)
            run = quiet_trainer(tmp_path, precision="32-true", limit_val_batches=1)
            run.validate(target, datamodule=data, ckpt_path=bad, verbose=False)
        _assert_unchanged(target, before)
        message = str(caught.value)
        assert str(bad) in message and "\n" not in message
        return message

    same = dict(backbone=tiny, task="rte", strategy="bitfit", init_seed=0)
    assert "trains strategy 'bitfit'" in refused(lambda c: None, **{**same, "strategy": "lora"})
    assert "is of backbone" in refused(lambda c: None, **{**same, "backbone": "minilm"})
    assert "is of task 'rte'" in refused(lambda c: None, **{**same, "task": "mrpc"})

    def shrink(c):
        c["state_dict"]["model.classifier.weight"] = c["state_dict"]["model.classifier.weight"][:, :16]

    assert "has shape (2, 16), the model's (2, 32)" in refused(shrink, **same)
    assert "was not written by pet_lightning" in refused(lambda c: c.pop("pet_lightning"), **same)


class _Opaque:
    """Not a tensor or plain value: a weights_only load must refuse it."""


def test_trainable_only_checkpoints_are_weights_only_and_load_without_missing_key_warnings(data_dir, tiny, tmp_path):
    module, trainer = _fit_briefly(data_dir, tiny, tmp_path, strategy={"name": "lora", "r": 4})
    path = tmp_path / "lora.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)  # everything stored is weights_only-loadable
    assert len(checkpoint["state_dict"]) < len(module.state_dict())  # trainable tensors only
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reloaded = PETModule.load_from_checkpoint(path)
        fresh = PETModule(backbone=tiny, task="rte", strategy={"name": "lora", "r": 4}, init_seed=0)
        quiet_trainer(tmp_path, precision="32-true", limit_val_batches=1).validate(
            fresh, datamodule=small_glue(data_dir, backbone=tiny, **DATA), ckpt_path=path, verbose=False)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "not in the checkpoint" in m or "issing" in m], messages
    for name, param in module.model.named_parameters():
        assert torch.equal(param, dict(reloaded.model.named_parameters())[name]), name


def test_a_backbone_that_needs_remote_code_is_refused_unless_the_user_allows_it(tmp_path):
    """pet_lightning never passes trust_remote_code: a model folder whose code would run is refused."""
    import json

    from pet_lightning.backbones import BackboneError, load_config

    folder = tmp_path / "remote"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "custom-remote", "auto_map": {
        "AutoConfig": "configuration_custom.CustomConfig"}}))
    (folder / "configuration_custom.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(BackboneError, match=r"needs its own code to run \(trust_remote_code\), which pet_lightning"):
        load_config(str(folder))
    package = REPO_ROOT / "pet_lightning"
    assert not [p for p in package.rglob("*.py") if "trust_remote_code=True" in p.read_text(encoding="utf-8")]
