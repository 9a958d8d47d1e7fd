"""Shared fixtures: the real data root, the packaged offline model, tiny random-init configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The real GLUE/SuperGLUE root from PET_DATA_DIR; tests that need it skip on machines without it."""
    root = os.environ.get("PET_DATA_DIR")
    if not root:
        pytest.skip("PET_DATA_DIR is not set: point it at a root holding glue/ and superglue/ (CI sets it)")
    if not Path(root).is_dir():
        pytest.fail(f"PET_DATA_DIR={root} is not a folder")
    return root


@pytest.fixture(scope="session")
def tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64,
    )
