"""Fixtures for the strategy tests: the packaged MiniLM and tiny random-init encoders of five families."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from transformers import BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, RobertaConfig

from pet_lightning.backbones import build_from_config, load_backbone
from pet_lightning.tasks import get_task

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
    defaults = dict(accelerator="cpu", devices=1, precision="bf16-mixed", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                    num_sanity_val_steps=0)
    return L.Trainer(**{**defaults, **kwargs})
