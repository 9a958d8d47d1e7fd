"""Fixtures of the benchmark tests: the session's tiny backbone, for tests that also read real RTE and CB."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_backbone(tiny: str, data_dir: str) -> str:
    """The session's 2-layer, 32-wide random BERT (``tiny``); tests requesting it skip where ``PET_DATA_DIR`` is not
    set (``data_dir``)."""
    return tiny
