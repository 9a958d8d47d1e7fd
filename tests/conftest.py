"""Shared fixtures: the real data root, the repository as the working folder, the tiny backbone and a tiny config.

Helpers that are not fixtures live in :mod:`tests.helpers`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]

# Under pytest-xdist each worker gets its share of the cores for torch (and, through OMP_NUM_THREADS, for the
# processes a test starts), so that the workers' fits do not oversubscribe the machine: on 2 cores two one-thread
# workers finish the suite sooner than one two-thread process.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    import torch

    # The cores this process may use (a container or a SLURM step can allow fewer than the machine has).
    _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _THREADS = max(1, _CORES // _WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)
    torch.set_num_threads(_THREADS)

# A relative PET_DATA_DIR (the README's `PET_DATA_DIR=../shared/data`) means the folder pytest started in. Made
# absolute before any test runs, so that tests which change directory, or start a process in another folder
# (`cwd=REPO_ROOT`), read the same data wherever pytest was started.
if os.environ.get("PET_DATA_DIR", "").strip():
    os.environ["PET_DATA_DIR"] = os.path.abspath(os.environ["PET_DATA_DIR"].strip())


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
def tiny(tmp_path_factory) -> str:
    """A 2-layer, 32-wide random BERT with MiniLM's tokenizer, saved once for the session as a local backbone folder
    (:func:`tests.helpers.backbones.write_tiny_backbone`, seed 0). Shared: a test that writes into the folder takes a
    private copy (:func:`tests.helpers.backbones.copy_backbone`)."""
    from tests.helpers.backbones import write_tiny_backbone

    return write_tiny_backbone(tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture(scope="session")
def tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64,
    )
