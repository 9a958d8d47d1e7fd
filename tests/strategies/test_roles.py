"""Roles found by structure on the five encoder families, checked against their real module names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pet_lightning.strategies import StrategyError, build_strategy
from pet_lightning.strategies.roles import find_roles
from tests.helpers.backbones import MINILM_LAYERS, tiny_model

# Layer 0 of each family, by the names its modeling code uses.
EXPECTED_LAYER_0 = {
    "bert": ("bert.encoder.layer.0", ["attention.self.query", "attention.self.key", "attention.self.value",
                                      "attention.output.dense"], ["intermediate.dense", "output.dense"],
             ["attention.output.LayerNorm"], ["output.LayerNorm"], ["bert.embeddings.LayerNorm"]),
    "roberta": ("roberta.encoder.layer.0", ["attention.self.query", "attention.self.key", "attention.self.value",
                                            "attention.output.dense"], ["intermediate.dense", "output.dense"],
                ["attention.output.LayerNorm"], ["output.LayerNorm"], ["roberta.embeddings.LayerNorm"]),
    "deberta-v2": ("deberta.encoder.layer.0", ["attention.self.query_proj", "attention.self.key_proj",
                                               "attention.self.value_proj", "attention.self.pos_key_proj",
                                               "attention.self.pos_query_proj", "attention.output.dense"],
                   ["intermediate.dense", "output.dense"], ["attention.output.LayerNorm"], ["output.LayerNorm"],
                   ["deberta.embeddings.LayerNorm", "deberta.encoder.LayerNorm"]),
    "electra": ("electra.encoder.layer.0", ["attention.self.query", "attention.self.key", "attention.self.value",
                                            "attention.output.dense"], ["intermediate.dense", "output.dense"],
                ["attention.output.LayerNorm"], ["output.LayerNorm"], ["electra.embeddings.LayerNorm"]),
    "distilbert": ("distilbert.transformer.layer.0", ["attention.q_lin", "attention.k_lin", "attention.v_lin",
                                                      "attention.out_lin"], ["ffn.lin1", "ffn.lin2"],
                   ["sa_layer_norm"], ["output_layer_norm"], ["distilbert.embeddings.LayerNorm"]),
}


@pytest.mark.parametrize("family", sorted(EXPECTED_LAYER_0))
def test_roles_match_each_family_module_names(family):
    prefix, attention, ffn, norm_a, norm_f, outer = EXPECTED_LAYER_0[family]
    roles = find_roles(tiny_model(family))
    assert len(roles.layers) == 2
    layer = roles.layers[0]
    assert layer.prefix == prefix
    assert list(layer.attention) == [f"{prefix}.{n}" for n in attention]
    assert list(layer.ffn) == [f"{prefix}.{n}" for n in ffn]
    assert list(layer.attention_norms) == [f"{prefix}.{n}" for n in norm_a]
    assert list(layer.ffn_norms) == [f"{prefix}.{n}" for n in norm_f]
    assert list(roles.outer_norms) == outer
    assert roles.layers[1].prefix == prefix[:-1] + "1"


# Hand counts for hidden 16, FFN 32, 2 layers: a 16x16 linear has 272 parameters, the FFN 16*32+32+32*16+16.
@pytest.mark.parametrize(
    ("family", "attention_linears"),
    [("bert", 4), ("roberta", 4), ("deberta-v2", 6), ("electra", 4), ("distilbert", 4)],
)
def test_strategy_counts_on_tiny_models_of_each_family(family, attention_linears):
    model = tiny_model(family)
    cases = {
        "ffn": ("ffn", {}),
        "attention": ("attention", {}),
        "layernorm": ("layernorm", {}),
        "layernorm_f": ("layernorm", {"where": "ffn"}),
        "layernorm_top_and_outer": ("layernorm", {"layers": [1], "include_embeddings": True}),
        "top_1": ("top_k_layers", {"k": 1}),
    }
    counts = {}
    for label, (name, settings) in cases.items():
        strategy = build_strategy(name, **settings)
        report = strategy.apply(model)
        counts[label] = report.trainable
        report.remove()
    per_layer_attention = attention_linears * 272
    # Embedding LayerNorm (ELECTRA's is embedding_size 8 wide) plus DeBERTa-v2's relative-position LayerNorm.
    outer = {"electra": 2 * 8, "deberta-v2": 2 * (2 * 16)}.get(family, 2 * 16)
    assert counts == {
        "ffn": 2 * 1072,
        "attention": 2 * per_layer_attention,
        "layernorm": 2 * 2 * 32,
        "layernorm_f": 2 * 32,
        "layernorm_top_and_outer": 2 * 32 + outer,
        "top_1": per_layer_attention + 1072 + 2 * 32,
    }


def test_out_of_range_layer_is_a_one_line_error_naming_strategy_index_and_model(minilm):
    with pytest.raises(StrategyError) as err:
        build_strategy("layernorm", layers=[99]).apply(minilm)
    message = str(err.value)
    assert "\n" not in message
    assert "'layernorm'" in message and "layer index 99" in message and "BertForSequenceClassification" in message
    assert f"0..{MINILM_LAYERS - 1}" in message


def test_negative_layer_counts_from_the_top(minilm):
    report = build_strategy("layernorm", layers=[-1]).apply(minilm)
    assert {n for n in report.trainable_names if "LayerNorm" in n} == {
        f"bert.encoder.layer.5.{part}.LayerNorm.{kind}" for part in ("attention.output", "output")
        for kind in ("weight", "bias")
    }


def test_strategy_that_selects_nothing_names_strategy_and_model():
    model = tiny_model("bert")
    for layer in model.bert.encoder.layer:
        layer.attention.output.LayerNorm = nn.Identity()
        layer.output.LayerNorm = nn.Identity()
    with pytest.raises(StrategyError, match=r"'layernorm' selects no parameter in BertForSequenceClassification"):
        build_strategy("layernorm").apply(model)


@pytest.mark.parametrize(
    ("name", "settings", "problem"),
    [
        ("layernorm", {"where": "pooler"}, "where='pooler' is not one of all, attention, ffn"),
        ("layernorm", {"layers": []}, "layers=[] selects nothing"),
        ("ffn", {"layers": 3}, "must be a list of layer indices"),
        ("random", {"count": 5, "fraction": 0.1}, "give count or fraction, not both"),
        ("random", {"fraction": 1.5}, "must be in (0, 1]"),
        ("random", {"count": 0}, "must be a positive integer"),
        ("top_k_layers", {"k": 0}, "must be a positive number of layers"),
    ],
)
def test_bad_settings_are_one_line_errors(name, settings, problem):
    with pytest.raises(StrategyError) as err:
        build_strategy(name, **settings)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_top_k_beyond_the_model_depth_is_an_error(minilm):
    with pytest.raises(StrategyError, match=r"k=7 exceeds the 6 layers of BertForSequenceClassification"):
        build_strategy("top_k_layers", k=7).apply(minilm)


def test_bert_base_percent_reproduces_transferability_table_1():
    """bert-base-uncased's architecture (BertConfig() defaults, random init, no download): Table 1's %Param."""
    from transformers import BertConfig

    from pet_lightning.backbones import build_from_config
    from pet_lightning.tasks import get_task

    torch.manual_seed(0)
    model = build_from_config(BertConfig(), get_task("rte"))
    rows = {
        "Feed-Forward": ("ffn", {}),
        "Multi-Head": ("attention", {}),
        "LayerNorms": ("layernorm", {}),
        "LayerNorms_A": ("layernorm", {"where": "attention"}),
        "LayerNorms_F": ("layernorm", {"where": "ffn"}),
        "Random": ("random", {}),
        "Frozen": ("frozen", {}),
    }
    percent = {}
    for row, (name, settings) in rows.items():
        strategy = build_strategy(name, **settings)
        report = strategy.apply(model)
        assert report.total == 109_482_240
        percent[row] = round(report.percent, 2)
        report.remove()
    assert percent == {"Feed-Forward": 51.76, "Multi-Head": 25.89, "LayerNorms": 0.03, "LayerNorms_A": 0.02,
                       "LayerNorms_F": 0.02, "Random": 0.03, "Frozen": 0.0}
