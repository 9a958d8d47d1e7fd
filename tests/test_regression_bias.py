"""``regression_bias='label_mean'``: a regression head's output bias starts at the training labels' mean."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.strategies.base import unwrap
from tests.helpers.data import small_glue
from tests.helpers.trainers import quiet_trainer


def _module(backbone: str, task: str = "stsb", **kwargs) -> PETModule:
    settings = dict(backbone=backbone, task=task, strategy="full", learning_rate=1e-2, warmup_ratio=0.0,
                    init_seed=0)
    return PETModule(**{**settings, **kwargs})


def _fit_one_step(root, module: PETModule, data: GlueDataModule, probe: L.Callback) -> None:
    run = quiet_trainer(root, precision="32-true", limit_val_batches=0, callbacks=[probe], max_steps=1)
    run.fit(module, datamodule=data)


def _output_bias(module: PETModule) -> torch.Tensor:
    head = unwrap(module.model).classifier
    return (head.out_proj if hasattr(head, "out_proj") else head).bias


class BiasAtStart(L.Callback):
    """The head's biases right after on_fit_start (before any optimizer step)."""

    def __init__(self):
        self.output: torch.Tensor | None = None
        self.all: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.output = _output_bias(pl_module).detach().clone()
        self.all = {n: p.detach().clone() for n, p in unwrap(pl_module.model).classifier.named_parameters()
                    if n.endswith("bias")}


def _label_mean(dm: GlueDataModule) -> float:
    labels = [float(example["label"]) for example in dm.plan.train]
    assert len(labels) == 16
    return sum(labels) / len(labels)


@pytest.mark.parametrize("head", ["hf", "mlp"])
def test_label_mean_sets_the_output_bias_at_fit_start(tmp_path, data_dir, tiny, head):
    dm = small_glue(data_dir, "stsb", backbone=tiny)
    module = _module(tiny, head=head, head_hidden_size=8, regression_bias="label_mean")
    assert torch.count_nonzero(_output_bias(module)) == 0
    probe = BiasAtStart()
    _fit_one_step(tmp_path, module, dm, probe)
    mean = _label_mean(dm)
    assert 0.0 < mean <= 5.0  # STS-B similarity scores lie in [0, 5]
    # The labels the model trains on hold the same mean.
    encoded = torch.tensor([float(dm.datasets["train"][i]["label"]) for i in range(len(dm.datasets["train"]))])
    assert torch.isclose(encoded.mean(), torch.tensor(mean), atol=1e-5)
    assert probe.output.shape == (1,)
    assert torch.equal(probe.output, torch.full((1,), mean, dtype=probe.output.dtype))
    if head == "mlp":
        # Only out_proj's bias is set; the dense layer's bias stays a fresh MLP's zero.
        assert set(probe.all) == {"dense.bias", "out_proj.bias"}
        assert torch.count_nonzero(probe.all["dense.bias"]) == 0
    # fill_regression_bias returns the mean it set.
    assert module.fill_regression_bias() == pytest.approx(mean)


def test_zero_leaves_the_bias_at_zero(tmp_path, data_dir, tiny):
    module = _module(tiny, regression_bias="zero")
    probe = BiasAtStart()
    _fit_one_step(tmp_path, module, small_glue(data_dir, "stsb", backbone=tiny), probe)
    assert torch.count_nonzero(probe.output) == 0
    assert module.fill_regression_bias() is None


def test_default_is_zero(tiny):
    assert _module(tiny).hparams.regression_bias == "zero"


def test_classification_task_is_untouched(tmp_path, data_dir, tiny):
    module = _module(tiny, task="rte", regression_bias="label_mean")
    before = {n: p.detach().clone() for n, p in unwrap(module.model).classifier.named_parameters()}
    assert module.fill_regression_bias() is None
    probe = BiasAtStart()
    _fit_one_step(tmp_path, module, small_glue(data_dir, backbone=tiny), probe)
    assert torch.equal(probe.all["bias"], before["bias"])
    assert module.fill_regression_bias() is None


def test_resumed_fit_keeps_the_checkpoints_bias(tmp_path, data_dir, tiny):
    first = _module(tiny, regression_bias="label_mean")
    epochs = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1, every_n_epochs=1,
                             save_on_train_epoch_end=True)
    dm = small_glue(data_dir, "stsb", backbone=tiny)
    run = quiet_trainer(tmp_path / "a", precision="32-true", limit_val_batches=0, callbacks=[epochs], max_epochs=1,
                        enable_checkpointing=True)
    run.fit(first, datamodule=dm)
    mean = _label_mean(dm)
    saved = _output_bias(first).detach().clone()
    assert not torch.allclose(saved, torch.full_like(saved, mean)), "training must move the bias for this to test"

    resumed = _module(tiny, regression_bias="label_mean")
    probe = BiasAtStart()
    run = quiet_trainer(tmp_path / "b", precision="32-true", limit_val_batches=0, callbacks=[probe], max_epochs=2)
    run.fit(resumed, datamodule=small_glue(data_dir, "stsb", backbone=tiny),
            ckpt_path=tmp_path / "ckpt" / "epoch=0.ckpt")
    assert torch.equal(probe.output, saved)


def test_bad_value_raises_value_error(tiny):
    with pytest.raises(ValueError, match="regression_bias='mean'.*zero, label_mean"):
        _module(tiny, regression_bias="mean")
