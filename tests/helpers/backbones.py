"""Backbones for tests: the packaged MiniLM's sizes, tiny random-init configs of every family, and a tiny BERT saved
as a local folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, RobertaConfig

from pet_lightning.backbones import build_from_config
from pet_lightning.tasks import get_task

# The packaged all-MiniLM-L6-v2: 6 layers, hidden 384, FFN 1536, 22,713,216 encoder parameters.
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
    """A tiny random-init ``family`` encoder (seed 0) with an RTE head."""
    torch.manual_seed(0)
    return build_from_config(tiny_configs()[family], get_task("rte"))


def write_tiny_backbone(folder: Path, seed: int = 0) -> str:
    """Save a 2-layer, 32-wide BERT (random weights from ``seed``, dropout 0.1) and MiniLM's tokenizer to ``folder``;
    returns the folder as a backbone name. Reuses the folder when it is already there."""
    from transformers import BertModel

    from pet_lightning.backbones import load_tokenizer

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return str(folder)
    tokenizer = load_tokenizer("minilm")
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def copy_backbone(backbone: str, folder: Path) -> str:
    """A private copy of a backbone folder, for a test that writes into it (the session's ``tiny`` is shared)."""
    shutil.copytree(backbone, folder)
    return str(folder)
