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

# A relative PET_DATA_DIR (the README's `PET_DATA_DIR=../shared/data`) means the folder pytest started in. Made
# absolute before any test runs, so that tests which change directory, or start a process in another folder
# (`cwd=REPO_ROOT`), read the same data wherever pytest was started.
if os.environ.get("PET_DATA_DIR", "").strip():
    os.environ["PET_DATA_DIR"] = os.path.abspath(os.environ["PET_DATA_DIR"].strip())


def real_fit_precision() -> str:
    """The precision of the suite's fits of the real model: bf16-mixed (the quickstart's) where this CPU runs bf16
    natively, 32-true where it emulates bf16, which makes every step about 15x slower (pet_lightning.precision) and
    the suite hours long. What these fits check (which tensors train, that a config wires up and fits, that a short
    fine-tune learns) holds in either precision; bf16 itself stays covered by the tiny-model tests and the
    quickstart run, which keep bf16-mixed everywhere."""
    from pet_lightning.precision import cpu_bf16_emulated

    return "32-true" if cpu_bf16_emulated() else "bf16-mixed"


def real_fit_overrides() -> list[str]:
    """``cli.py fit`` arguments that set :func:`real_fit_precision` over a config's own."""
    return [f"--trainer.precision={real_fit_precision()}"]


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The real GLUE/SuperGLUE root from PET_DATA_DIR, as an absolute path; tests that need it skip on machines
    without it."""
    root = os.environ.get("PET_DATA_DIR")
    if not root:
        pytest.skip("PET_DATA_DIR is not set: point it at a root holding glue/ and superglue/ (CI sets it)")
    if not Path(root).is_dir():
        pytest.fail(f"PET_DATA_DIR={root} is not a folder: point it at a root holding glue/ and superglue/")
    return os.path.abspath(root)


@pytest.fixture
def in_repo(monkeypatch) -> Path:
    """The test runs as a command started in the repository root, wherever pytest started: relative names such as
    ``configs/quickstart.yaml`` (and the ``configs/...`` templates of study files) mean the repository's files."""
    from pet_lightning import paths

    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(paths, "START_DIR", REPO_ROOT)
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64,
    )
