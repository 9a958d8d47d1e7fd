"""Frozen layers cost no activation memory, and frozen tensors get no gradient buffer or optimizer state."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from benchmarks.memory import (
    gradient_bytes,
    lowest_trained_layer,
    optimizer_state_bytes,
    saved_activation_bytes,
)
from pet_lightning import PETModule
from pet_lightning.backbones import build_from_config
from pet_lightning.data import GlueDataModule
from pet_lightning.strategies import build_strategy
from pet_lightning.tasks import get_task


def _model(tiny_bert_config, strategy, **settings):
    torch.manual_seed(0)
    model = build_from_config(tiny_bert_config, get_task("rte"))
    report = build_strategy(strategy, **settings).apply(model)
    return report.model.train()


def _inputs():
    ids = torch.randint(3, 100, (4, 12), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_full_fine_tuning_keeps_activations_in_every_layer(tiny_bert_config):
    saved = saved_activation_bytes(_model(tiny_bert_config, "full"), _inputs())
    assert all(saved[part] > 0 for part in ("embeddings", "layer.0", "layer.1"))


def test_frozen_encoder_keeps_no_activation(tiny_bert_config):
    model = _model(tiny_bert_config, "frozen")
    saved = saved_activation_bytes(model, _inputs())
    assert saved["embeddings"] == saved["layer.0"] == saved["layer.1"] == 0
    assert lowest_trained_layer(model) is None


@pytest.mark.parametrize(("strategy", "settings"), [("top_k_layers", {"k": 1}), ("bitfit", {"layers": [1]})])
def test_backward_stops_at_the_lowest_trained_layer(tiny_bert_config, strategy, settings):
    model = _model(tiny_bert_config, strategy, **settings)
    assert lowest_trained_layer(model) == 1
    saved = saved_activation_bytes(model, _inputs())
    # Below the lowest trained layer autograd records nothing: no explicit no_grad() is needed.
    assert saved["embeddings"] == saved["layer.0"] == 0
    assert saved["layer.1"] > 0


@pytest.mark.parametrize("strategy", ["frozen", "bitfit", "lora"])
def test_frozen_tensors_get_no_gradient_or_optimizer_state(data_dir, strategy):
    module = PETModule(strategy=strategy, init_seed=0, learning_rate=1e-3)
    datamodule = GlueDataModule(task="rte", data_dir=data_dir, max_length=32, batch_size=8, train_subset=16)
    grads: dict[str, bool] = {}

    class Capture(L.Callback):
        # Lightning sets gradients to None after each step: look at them just before the optimizer uses them.
        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            grads.update({name: p.grad is not None for name, p in pl_module.model.named_parameters()})

    trainer = L.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[Capture()],
    )
    trainer.fit(module, datamodule=datamodule)
    trainable = {name for name, p in module.model.named_parameters() if p.requires_grad}
    frozen = set(grads) - trainable
    assert frozen and not any(grads[name] for name in frozen)
    assert all(grads[name] for name in trainable)
    optimizer = trainer.optimizers[0]
    state_ids = {id(p) for p in optimizer.state}
    named = dict(module.model.named_parameters())
    assert state_ids == {id(named[name]) for name in trainable}
    expected = sum(2 * named[name].numel() * named[name].element_size() for name in trainable)
    # Two moments per trainable tensor plus a scalar step each.
    assert expected <= optimizer_state_bytes(optimizer) <= expected + 8 * len(trainable)
    # After fit only trainable tensors may hold a gradient buffer (the last step's).
    assert all(named[name].grad is None for name in frozen)
    assert gradient_bytes(module.model) <= sum(named[name].numel() * named[name].element_size() for name in trainable)
