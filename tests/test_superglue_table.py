"""The SuperGLUE table script's helpers: the RTE jsonl rewritten from GLUE's tsv and the majority-class baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.superglue_table import data_module, majority_baseline
from tests.conftest import REPO_ROOT
from tests.helpers.superglue_rte import write_rte_jsonl


def test_rte_rewritten_from_glue_loads_as_superglue_rte(data_dir, tmp_path):
    write_rte_jsonl(Path(data_dir), tmp_path)
    first = json.loads((tmp_path / "superglue" / "RTE" / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"premise", "hypothesis", "label", "idx"} and first["idx"] == 0
    assert "label" not in json.loads((tmp_path / "superglue" / "RTE" / "test.jsonl").read_text().splitlines()[0])
    module = data_module(str(REPO_ROOT / "configs/superglue/rte_full.yaml"), str(tmp_path), train_subset=None)
    assert module.spec.name == "superglue-rte"
    assert [len(module.load_examples(split)) for split in ("train", "validation", "test")] == [2490, 277, 3000]
    # Train: 1249 entailment vs 1241 not_entailment; dev: 146 of 277 entailment.
    assert majority_baseline(module) == pytest.approx(146 / 277)


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        # Train's majority is contradiction (119 of 250): val accuracy 28/56, F1 2/3 on that class, 0 on the others.
        ("cb", (28 / 56 + (2 / 3) / 3) / 2),
        ("copa", 45 / 100),  # train's majority answer is choice 1 (205 of 400); 45 of 100 val answers are 1
        ("wsc", 66 / 104),  # always False (295 of 554 in train); 66 of 104 val rows are False
    ],
)
def test_majority_baseline_matches_hand_computation(data_dir, task, expected):
    module = data_module(str(REPO_ROOT / f"configs/superglue/{task}_full.yaml"), data_dir, train_subset=None)
    assert majority_baseline(module) == pytest.approx(expected)
