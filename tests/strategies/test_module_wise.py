"""ffn and attention on the real MiniLM: exact parameter sets, hand counts, and what real training changes."""

from __future__ import annotations

import pytest

from pet_lightning.strategies import build_strategy
from tests.helpers.backbones import FFN, HIDDEN, MINILM_LAYERS, MINILM_TOTAL
from tests.strategies.conftest import ATTENTION_PARTS, FFN_PARTS, HEAD, layer_names, train_briefly


def test_ffn_trains_exactly_both_dense_layers_of_every_layer(minilm):
    report = build_strategy("ffn").apply(minilm)
    expected = set().union(*(layer_names(i, *FFN_PARTS) for i in range(MINILM_LAYERS)))
    assert set(report.trainable_names) == expected | HEAD
    assert report.trainable == MINILM_LAYERS * (HIDDEN * FFN + FFN + FFN * HIDDEN + HIDDEN) == 7_089_408
    assert report.total == MINILM_TOTAL and report.head == 2 * HIDDEN + 2


def test_attention_trains_exactly_query_key_value_output(minilm):
    report = build_strategy("attention").apply(minilm)
    expected = set().union(*(layer_names(i, *ATTENTION_PARTS) for i in range(MINILM_LAYERS)))
    assert set(report.trainable_names) == expected | HEAD
    assert report.trainable == MINILM_LAYERS * 4 * (HIDDEN * HIDDEN + HIDDEN) == 3_548_160


def test_layers_restricts_module_wise_selection(minilm):
    report = build_strategy("attention", layers=[0, 5]).apply(minilm)
    assert set(report.trainable_names) == layer_names(0, *ATTENTION_PARTS) | layer_names(5, *ATTENTION_PARTS) | HEAD
    assert report.trainable == 2 * 4 * (HIDDEN * HIDDEN + HIDDEN)


@pytest.mark.parametrize("name", ["ffn", "attention"])
def test_real_training_changes_only_the_selected_tensors(name, data_dir, tmp_path):
    module, before, changed = train_briefly(data_dir, tmp_path, name)
    selected = set(module.report.trainable_names)
    assert changed == selected, (sorted(selected - changed), sorted(changed - selected))
