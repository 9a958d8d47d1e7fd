"""Fixtures for the strategy tests: the packaged MiniLM and tiny random-init encoders of five families."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from transformers import BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, RobertaConfig

from pet_lightning.backbones import build_from_config, load_backbone
from pet_lightning.tasks import get_task
from tests.conftest import real_fit_precision

# all-MiniLM-L6-v2: 6 layers, hidden 384, FFN 1536.
MINILM_LAYERS, HIDDEN, FFN = 6, 384, 1536
MINILM_TOTAL = 22_713_216


def tiny_configs() -> dict:
    """Tiny configs (hidden 16, FFN 32, 2 layers) of every family the module-wise strategies support."""
    common = dict(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                  max_position_embeddings=64)
    return {
        "bert": BertConfig(**common),
        "roberta": RobertaConfig(**common, pad_token_id=1),
        # Separate position projections (share_att_key=False): two more attention linears per layer.
        "deberta-v2": DebertaV2Config(**common, relative_attention=True, pos_att_type=["p2c", "c2p"],
                                      position_buckets=8, norm_rel_ebd="layer_norm", share_att_key=False),
        # embedding_size != hidden_size adds an embeddings_project linear outside the layers.
        "electra": ElectraConfig(**common, embedding_size=8),
        "distilbert": DistilBertConfig(vocab_size=100, dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                                       max_position_embeddings=64),
    }


def tiny_model(family: str):
    torch.manual_seed(0)
    return build_from_config(tiny_configs()[family], get_task("rte"))


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


def trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(accelerator="cpu", devices=1, precision=real_fit_precision(), logger=False,
                    enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                    num_sanity_val_steps=0)
    return L.Trainer(**{**defaults, **kwargs})


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
    trainer(tmp_path, max_epochs=epochs, limit_val_batches=0).fit(module, datamodule=data)
    after = dict(module.model.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name].detach())}
    return module, before, changed


def rte_data(data_dir: str):
    """Real RTE kept tiny for CI: 16 training examples in batches of 8 (2 steps an epoch), 32 tokens."""
    from pet_lightning import GlueDataModule

    return GlueDataModule(task="rte", data_dir=data_dir, batch_size=8, eval_batch_size=16, max_length=32,
                          train_subset=16, order_seed=0)


def check_reload_and_resume(data_dir: str, tmp_path, strategy, learning_rate: float = 1e-3) -> int:
    """Reload (load_from_checkpoint, validate(ckpt_path=...)) and resume (fit(ckpt_path=...)) reproduce a run exactly.

    Dropout is on: the checkpoint carries the dropout stream, so the resumed run matches bit for bit. The schedule's
    length is pinned so that a 1-epoch and a 2-epoch trainer decay the learning rate identically.
    Returns the checkpoint's size in bytes.
    """
    from pet_lightning import PETModule

    def build():
        module = PETModule(task="rte", strategy=strategy, learning_rate=learning_rate, weight_decay=0.1,
                           warmup_ratio=0.0, init_seed=0, hidden_dropout=0.1)
        module.optimizer_overrides = {"total_steps": 4}
        return module

    L.seed_everything(0)
    whole = build()
    whole_trainer = trainer(tmp_path / "whole", max_epochs=2, limit_val_batches=1)
    whole_trainer.fit(whole, datamodule=rte_data(data_dir))

    L.seed_everything(0)
    first = build()
    first_trainer = trainer(tmp_path / "first", max_epochs=1, limit_val_batches=1)
    first_trainer.fit(first, datamodule=rte_data(data_dir))
    path = tmp_path / "epoch1.ckpt"
    first_trainer.save_checkpoint(path)
    expected = first_trainer.validate(first, datamodule=rte_data(data_dir), verbose=False)[0]

    reloaded = PETModule.load_from_checkpoint(path)
    got = trainer(tmp_path, limit_val_batches=1).validate(reloaded, datamodule=rte_data(data_dir), verbose=False)[0]
    assert got == expected
    for name, p in first.model.named_parameters():
        assert torch.equal(p, dict(reloaded.model.named_parameters())[name]), name
    got = trainer(tmp_path, limit_val_batches=1).validate(build(), datamodule=rte_data(data_dir), ckpt_path=path,
                                                          verbose=False)[0]
    assert got == expected

    L.seed_everything(0)
    resumed = build()
    resumed_trainer = trainer(tmp_path / "resumed", max_epochs=2, limit_val_batches=1)
    resumed_trainer.fit(resumed, datamodule=rte_data(data_dir), ckpt_path=path)
    whole_params = dict(whole.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        assert torch.equal(p, whole_params[name]), f"{name} differs after resuming"
    for key in ("val/loss", "val/accuracy"):
        assert torch.equal(resumed_trainer.callback_metrics[key], whole_trainer.callback_metrics[key]), key
    return path.stat().st_size
