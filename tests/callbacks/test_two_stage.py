"""Two-stage training (EH-FT / LP-FT) on the real MiniLM and a small RTE subset."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from pet_lightning import PETModule
from pet_lightning.backbones import load_backbone
from pet_lightning.callbacks import TwoStageTraining
from pet_lightning.strategies.base import backbone_of, unwrap
from pet_lightning.tasks import get_task
from tests.conftest import REPO_ROOT
from tests.helpers.data import small_glue
from tests.helpers.trainers import quiet_trainer

# 16 examples in batches of 8: two optimizer steps an epoch.
STEPS_PER_EPOCH = 2


def _module(strategy: str, **kwargs) -> PETModule:
    settings = dict(task="rte", strategy=strategy, learning_rate=1e-3, init_seed=0, warmup_ratio=0.1,
                    adam_betas=(0.9, 0.98), adam_eps=1e-6)
    return PETModule(**{**settings, **kwargs})


def _pretrained_backbone() -> dict[str, torch.Tensor]:
    return backbone_of(load_backbone("minilm", get_task("rte"))).state_dict()


class BoundaryProbe(L.Callback):
    """Listed after TwoStageTraining: sees the model at the end of stage 1 and right after the switch."""

    def __init__(self, boundary: int):
        self.boundary = boundary
        self.probe = torch.randn(4, 384, generator=torch.Generator().manual_seed(0))
        self.seen: dict = {}

    def _head(self, pl_module) -> torch.nn.Module:
        return unwrap(pl_module.model).classifier

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.boundary - 1:
            with torch.no_grad():
                self.seen["stage1_head_out"] = self._head(pl_module)(self.probe).clone()
            self.seen["stage1_head"] = {n: p.detach().clone() for n, p in self._head(pl_module).named_parameters()}
            self.seen["stage1_backbone"] = {k: v.clone() for k, v in backbone_of(pl_module.model).state_dict().items()}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch != self.boundary:
            return
        with torch.no_grad():
            self.seen["stage2_head_out"] = self._head(pl_module)(self.probe).clone()
        self.seen["stage2_head"] = {n: p.detach().clone() for n, p in self._head(pl_module).named_parameters()}
        self.seen["stage2_backbone"] = {k: v.clone() for k, v in backbone_of(pl_module.model).state_dict().items()}
        optimizer = trainer.optimizers[0]
        self.seen["optimized"] = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.seen["requires_grad"] = {id(p) for p in pl_module.parameters() if p.requires_grad}
        self.seen["all_model_params"] = {id(p) for p in pl_module.model.parameters()}
        self.seen["group_lrs"] = {group["name"]: group["initial_lr"] for group in optimizer.param_groups}
        self.seen["first_lr"] = optimizer.param_groups[0]["lr"]
        scheduler = trainer.lr_scheduler_configs[0].scheduler
        self.seen["lr_factor"] = scheduler.lr_lambdas[0]
        self.seen["optimizer_state_size"] = len(optimizer.state)


@pytest.mark.parametrize("stage1", ["frozen", "bitfit", "lora"])
def test_boundary_restores_pretrained_backbone_keeps_head_and_rebuilds_optimizer(tmp_path, data_dir, stage1):
    max_epochs, boundary = 3, 1
    probe = BoundaryProbe(boundary)
    callback = TwoStageTraining(stage1_epochs=boundary, learning_rate=1e-5, warmup_ratio=0.25)
    module = _module(stage1)
    initial_head = {n: p.detach().clone() for n, p in unwrap(module.model).classifier.named_parameters()}
    trainer = quiet_trainer(tmp_path, precision="32-true", limit_val_batches=0, callbacks=[callback, probe],
                            max_epochs=max_epochs)
    trainer.fit(module, datamodule=small_glue(data_dir))
    seen, pretrained = probe.seen, _pretrained_backbone()

    # Stage 1 did train: the head moved, and BitFit moved backbone biases (which must then go back).
    assert any(not torch.equal(initial_head[n], p) for n, p in seen["stage1_head"].items())
    stage1_moved = [k for k, v in seen["stage1_backbone"].items()
                    if k in pretrained and not torch.equal(v, pretrained[k])]
    if stage1 == "bitfit":
        assert stage1_moved and all(k.endswith("bias") for k in stage1_moved)
    # At the boundary: every backbone tensor (buffers included) is the pretrained one, bit for bit ...
    assert set(seen["stage2_backbone"]) == set(pretrained)
    assert all(torch.equal(seen["stage2_backbone"][k], pretrained[k]) for k in pretrained)
    # ... and the head is the stage-1 head (its function, whatever wrapper stage 1 used).
    assert torch.equal(seen["stage2_head_out"], seen["stage1_head_out"])
    # The optimizer holds exactly the stage-2 (full fine-tuning) parameters, with fresh state and stage-2 lrs.
    assert seen["optimized"] == seen["requires_grad"] == seen["all_model_params"]
    assert seen["optimizer_state_size"] == 0
    assert set(seen["group_lrs"].values()) == {1e-5}
    # The new schedule spans stage 2 only: warmup over 25% of its 4 steps, zero at its end.
    stage2_steps = (max_epochs - boundary) * STEPS_PER_EPOCH
    assert seen["first_lr"] == 0.0
    assert seen["lr_factor"](1) == 1.0 and seen["lr_factor"](stage2_steps) == 0.0
    assert seen["lr_factor"](stage2_steps - 1) > 0.0
    assert callback.stage == 2 and module.strategy.name == "full" and type(module.model).__name__.startswith("Bert")
    # Stage 2 trained the backbone.
    assert not torch.equal(backbone_of(module.model).encoder.layer[0].output.dense.weight,
                           pretrained["encoder.layer.0.output.dense.weight"])


def test_keep_head_bias_false_resets_biases_to_a_fresh_head_and_stage_is_logged(tmp_path, data_dir):
    probe = BoundaryProbe(boundary=1)
    callback = TwoStageTraining(stage1_fraction=0.5, keep_head_bias=False)
    logger = CSVLogger(tmp_path, name="csv")
    trainer = quiet_trainer(tmp_path, precision="32-true", limit_val_batches=0, callbacks=[callback, probe],
                            max_epochs=2, logger=logger, log_every_n_steps=1)
    trainer.fit(_module("frozen"), datamodule=small_glue(data_dir))
    seen = probe.seen
    assert torch.equal(seen["stage2_head"]["weight"], seen["stage1_head"]["weight"])
    assert seen["stage1_head"]["bias"].abs().sum() > 0, "stage 1 must have moved the bias for this to test anything"
    assert torch.equal(seen["stage2_head"]["bias"], torch.zeros_like(seen["stage2_head"]["bias"]))
    with open(os.path.join(logger.log_dir, "metrics.csv")) as handle:
        stages = [float(row["train/stage"]) for row in csv.DictReader(handle) if row.get("train/stage")]
    assert stages == [1.0] * STEPS_PER_EPOCH + [2.0] * STEPS_PER_EPOCH


def _final_weights(module: PETModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.model.state_dict().items()}


def test_resume_in_stage_one_at_the_boundary_and_in_stage_two_equals_an_uninterrupted_run(tmp_path, data_dir):
    def run(root, ckpt_path=None, save=False):
        callbacks = [TwoStageTraining(stage1_epochs=2, learning_rate=1e-4)]
        if save:
            callbacks.append(ModelCheckpoint(dirpath=root, filename="{epoch}", save_top_k=-1, every_n_epochs=1,
                                             save_on_train_epoch_end=True))
        # Dropout on: checkpoints carry the dropout stream, and the switch keeps head loading off it.
        module = _module("bitfit", hidden_dropout=0.1)
        trainer = quiet_trainer(root, precision="32-true", limit_val_batches=0, callbacks=callbacks, max_epochs=4,
                                enable_checkpointing=save)
        trainer.fit(module, datamodule=small_glue(data_dir), ckpt_path=ckpt_path)
        return module, callbacks[0]

    reference, _ = run(tmp_path, save=True)
    expected = _final_weights(reference)
    # epoch=0: mid stage 1; epoch=1: end of stage 1 (the switch happens on resume); epoch=2: mid stage 2.
    for epoch, stored_stage in ((0, 1), (1, 1), (2, 2)):
        checkpoint = torch.load(tmp_path / f"epoch={epoch}.ckpt", weights_only=False)
        assert checkpoint["callbacks"]["TwoStageTraining"]["stage"] == stored_stage
        assert checkpoint["pet_lightning"]["strategy"]["name"] == ("bitfit" if stored_stage == 1 else "full")
        resumed, callback = run(tmp_path / f"resume{epoch}", ckpt_path=tmp_path / f"epoch={epoch}.ckpt")
        assert callback.stage == 2
        got = _final_weights(resumed)
        assert set(got) == set(expected)
        different = [k for k in expected if not torch.equal(got[k], expected[k])]
        assert not different, f"resumed from epoch {epoch}: {len(different)} tensors differ, e.g. {different[:2]}"


def test_ddp_ranks_hold_identical_weights_after_the_switch(tmp_path, data_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PET_DATA_DIR": data_dir}
    result = subprocess.run([sys.executable, "-m", "tests.scripts.two_stage_ddp", str(tmp_path)], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    pretrained = _pretrained_backbone()
    assert ranks[0]["stage"] == ranks[1]["stage"] == 2
    for key in ("boundary", "final"):
        first, second = ranks[0][key], ranks[1][key]
        assert set(first) == set(second)
        assert all(torch.equal(first[k], second[k]) for k in first), key
    # Weights that were frozen in stage 1 (BitFit) trained in stage 2, so equality above is not trivial.
    weight = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(ranks[0]["boundary"][weight], pretrained[weight.removeprefix("bert.")])
    assert not torch.equal(ranks[0]["final"][weight], pretrained[weight.removeprefix("bert.")])


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="stage1_fraction"):
        TwoStageTraining(stage1_fraction=1.5)
    with pytest.raises(ValueError, match="stage1_epochs"):
        TwoStageTraining(stage1_epochs=0)
