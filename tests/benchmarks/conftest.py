"""Fixtures of the benchmark tests: a tiny random-init backbone (its tests read real RTE and CB: ``PET_DATA_DIR``)."""

from __future__ import annotations

import pytest

from tests.tiny_backbone import write_tiny_backbone


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory, data_dir) -> str:
    """A 2-layer, 32-wide random BERT; tests requesting it skip where ``PET_DATA_DIR`` is not set (``data_dir``)."""
    return write_tiny_backbone(tmp_path_factory.mktemp("tiny") / "bert")
