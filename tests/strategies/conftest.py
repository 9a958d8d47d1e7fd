"""Fixtures for the strategy tests: the packaged MiniLM, its sizes and parameter names, and a brief real fit."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from pet_lightning.backbones import load_backbone
from pet_lightning.tasks import get_task
from tests.helpers.data import rte_data
from tests.helpers.trainers import quiet_trainer


@pytest.fixture
def minilm():
    """A fresh MiniLM with an RTE head (strategies change requires_grad and hooks, so none is shared)."""
    return load_backbone("minilm", get_task("rte"))


def layer_names(i: int, *parts: str) -> set[str]:
    return {f"bert.encoder.layer.{i}.{part}.{kind}" for part in parts for kind in ("weight", "bias")}


HEAD = {"classifier.weight", "classifier.bias"}
FFN_PARTS = ("intermediate.dense", "output.dense")
ATTENTION_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense")
NORM_A, NORM_F = ("attention.output.LayerNorm",), ("output.LayerNorm",)


def train_briefly(data_dir: str, tmp_path, strategy, *, learning_rate: float = 1e-3, weight_decay: float = 0.1,
                  epochs: int = 1):
    """Two real AdamW steps on RTE (see :func:`rte_data`); returns (module, parameters before, changed names).

    Weight decay is on (0.1) so that a frozen element moved by decay would show.
    """
    from pet_lightning import PETModule

    L.seed_everything(0)
    data = rte_data(data_dir)
    module = PETModule(task="rte", strategy=strategy, learning_rate=learning_rate, weight_decay=weight_decay,
                       warmup_ratio=0.0, init_seed=0)
    before = {name: p.detach().clone() for name, p in module.model.named_parameters()}
    quiet_trainer(tmp_path, max_epochs=epochs, limit_val_batches=0).fit(module, datamodule=data)
    after = dict(module.model.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name].detach())}
    return module, before, changed
