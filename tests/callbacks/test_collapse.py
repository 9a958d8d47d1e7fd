"""The collapse guard on real tiny runs: a frozen head that never learns warns; an exact probe does not."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from pet_lightning import PETModule
from pet_lightning.callbacks import CollapseGuard, ExactLinearProbe
from pet_lightning.data import GlueDataModule, SuperGlueDataModule
from pet_lightning.strategies.base import unwrap


def _small(module_cls, task: str, data_dir: str, train: int, evaluate: int, max_length: int = 32):
    data = module_cls(task=task, data_dir=data_dir, batch_size=16, max_length=max_length, train_subset=train,
                      order_seed=0, protocol="dev_split")
    data.setup("fit")
    data.plan.selection = {name: rows[:evaluate] for name, rows in data.plan.selection.items()}
    return data


def _fit(tmp_path, module, data, callbacks, epochs: int = 2) -> CollapseGuard:
    guard = CollapseGuard()
    L.seed_everything(0)
    L.Trainer(accelerator="cpu", devices=1, precision="32-true", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, max_epochs=epochs,
              default_root_dir=tmp_path, callbacks=[*callbacks, guard]).fit(module, datamodule=data)
    return guard


def test_frozen_stsb_with_a_tiny_learning_rate_warns_with_epoch_and_numbers(tmp_path, data_dir):
    data = _small(GlueDataModule, "stsb", data_dir, train=64, evaluate=64)
    module = PETModule(task="stsb", strategy="frozen", learning_rate=1e-6, warmup_ratio=0.0, init_seed=0)
    with pytest.warns(UserWarning, match=r"CollapseGuard: epoch 1: validation predictions are constant: std "):
        guard = _fit(tmp_path, module, data, [])
    assert [(f.epoch, f.kind) for f in guard.findings] == [
        (0, "constant_predictions"), (1, "constant_predictions"), (1, "loss_at_prior")]
    labels = torch.tensor([row["label"] for row in data.plan.train], dtype=torch.float64)
    # The prior is the training labels' (population) variance (labels are float32 in batches); the messages carry
    # the numbers.
    assert guard.prior_loss("regression") == pytest.approx(float(labels.var(unbiased=False)), rel=1e-6)
    assert f"the label variance {float(labels.var(unbiased=False)):.4f}" in guard.findings[2].message
    assert f"labels' std {float(labels.std(unbiased=False)):.4g}" in guard.findings[0].message


def test_an_exact_probe_on_the_same_task_raises_no_warning(tmp_path, data_dir):
    data = _small(GlueDataModule, "stsb", data_dir, train=200, evaluate=100)
    module = PETModule(task="stsb", strategy="frozen", init_seed=0)
    guard = _fit(tmp_path, module, data, [ExactLinearProbe()])
    assert guard.findings == []


def test_one_class_predictions_and_loss_above_the_class_entropy_warn_on_cb(tmp_path, data_dir):
    data = _small(SuperGlueDataModule, "cb", data_dir, train=32, evaluate=28, max_length=64)
    module = PETModule(task="cb", strategy="frozen", learning_rate=1e-6, warmup_ratio=0.0, init_seed=0)
    with torch.no_grad():
        unwrap(module.model).classifier.bias.copy_(torch.tensor([8.0, 0.0, 0.0]))  # every example -> class 0
    guard = _fit(tmp_path, module, data, [])
    kinds = [(f.epoch, f.kind) for f in guard.findings]
    assert kinds == [(0, "constant_predictions"), (1, "constant_predictions"), (1, "loss_at_prior")]
    assert "class 0 for all 28 examples" in guard.findings[0].message


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="std_ratio"):
        CollapseGuard(std_ratio=0.0)
