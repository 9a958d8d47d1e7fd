"""top_k_layers on the real MiniLM: every tensor of the top K layers and nothing else."""

from __future__ import annotations

from pet_lightning.strategies import build_strategy
from tests.helpers.backbones import FFN, HIDDEN
from tests.strategies.conftest import HEAD, train_briefly

PER_LAYER = 4 * (HIDDEN * HIDDEN + HIDDEN) + (HIDDEN * FFN + FFN + FFN * HIDDEN + HIDDEN) + 2 * 2 * HIDDEN


def test_top_2_layers_of_six_are_layers_4_and_5(minilm):
    report = build_strategy("top_k_layers", k=2).apply(minilm)
    layers = minilm.bert.encoder.layer
    expected = {f"bert.encoder.layer.{i}.{n}" for i in (4, 5) for n, _ in layers[i].named_parameters()}
    assert set(report.trainable_names) == expected | HEAD
    assert report.trainable == 2 * PER_LAYER == 3_548_928


def test_top_k_training_changes_only_the_top_layer(data_dir, tmp_path):
    module, _, changed = train_briefly(data_dir, tmp_path, {"name": "top_k_layers", "k": 1})
    assert changed == set(module.report.trainable_names)
    assert all(n.startswith("bert.encoder.layer.5.") for n in changed - HEAD)
