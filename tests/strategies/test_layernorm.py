"""layernorm on the real MiniLM: all / attention-side / FFN-side, per layer, with and without embeddings."""

from __future__ import annotations

import pytest

from pet_lightning.strategies import build_strategy
from tests.helpers.backbones import HIDDEN, MINILM_LAYERS
from tests.strategies.conftest import HEAD, NORM_A, NORM_F, layer_names, train_briefly

LN = 2 * HIDDEN  # gain and bias of one LayerNorm


@pytest.mark.parametrize(
    ("where", "parts", "count"),
    [("all", NORM_A + NORM_F, 2 * LN), ("attention", NORM_A, LN), ("ffn", NORM_F, LN)],
)
def test_where_selects_the_layernorms_after_attention_and_or_ffn(minilm, where, parts, count):
    report = build_strategy("layernorm", where=where).apply(minilm)
    expected = set().union(*(layer_names(i, *parts) for i in range(MINILM_LAYERS)))
    assert set(report.trainable_names) == expected | HEAD
    assert report.trainable == MINILM_LAYERS * count


def test_one_layer_at_a_time_as_in_table_3(minilm):
    for index in range(MINILM_LAYERS):
        strategy = build_strategy("layernorm", layers=[index])
        report = strategy.apply(minilm)
        assert set(report.trainable_names) == layer_names(index, *NORM_A, *NORM_F) | HEAD
        assert report.trainable == 2 * LN
        report.remove()


def test_include_embeddings_adds_the_embedding_layernorm(minilm):
    report = build_strategy("layernorm", where="ffn", include_embeddings=True).apply(minilm)
    expected = set().union(*(layer_names(i, *NORM_F) for i in range(MINILM_LAYERS)))
    assert set(report.trainable_names) == expected | {"bert.embeddings.LayerNorm.weight",
                                                      "bert.embeddings.LayerNorm.bias"} | HEAD
    assert report.trainable == MINILM_LAYERS * LN + LN


def test_yaml_style_settings_build_the_same_strategy():
    strategy = build_strategy({"name": "layernorm", "where": "attention", "layers": [0, 1]})
    assert strategy.config_dict() == {"name": "layernorm", "where": "attention", "layers": [0, 1],
                                      "include_embeddings": False}
    assert build_strategy(strategy.config_dict()) == strategy


def test_layernorm_training_changes_only_layernorms(data_dir, tmp_path):
    module, _, changed = train_briefly(data_dir, tmp_path, {"name": "layernorm", "where": "attention"})
    assert changed == set(module.report.trainable_names)
    assert all("attention.output.LayerNorm" in n for n in changed - HEAD)
