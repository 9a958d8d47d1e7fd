"""A tiny random BERT saved as a local backbone folder (with the packaged MiniLM's tokenizer), for fast real fits."""

from __future__ import annotations

from pathlib import Path


def write_tiny_backbone(folder: Path, seed: int = 0) -> str:
    """Save a 2-layer, 32-wide BERT (random weights from ``seed``, dropout 0.1) and MiniLM's tokenizer to ``folder``;
    returns the folder as a backbone name. Reuses the folder when it is already there."""
    import torch
    from transformers import BertConfig, BertModel

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
