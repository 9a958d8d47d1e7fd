"""bitfit on the real MiniLM: every backbone bias and nothing else; small checkpoints that reload and resume."""

from __future__ import annotations

import torch

from pet_lightning.strategies import build_strategy
from tests.helpers.backbones import FFN, HIDDEN, MINILM_LAYERS
from tests.helpers.resume import check_reload_and_resume
from tests.strategies.conftest import HEAD, train_briefly

# Per layer: q, k, v, attention-output (4 x 384), intermediate (1536), output (384), two LayerNorms (2 x 384).
PER_LAYER_BIASES = 4 * HIDDEN + FFN + HIDDEN + 2 * HIDDEN


def test_bitfit_trains_every_backbone_bias_including_layernorm_embeddings_and_pooler(minilm):
    report = build_strategy("bitfit").apply(minilm)
    expected = {f"bert.{n}" for n, _ in minilm.bert.named_parameters() if n.endswith(".bias")}
    assert "bert.embeddings.LayerNorm.bias" in expected and "bert.pooler.dense.bias" in expected
    assert "bert.encoder.layer.3.output.LayerNorm.bias" in expected
    assert set(report.trainable_names) == expected | HEAD
    assert report.trainable == MINILM_LAYERS * PER_LAYER_BIASES + HIDDEN + HIDDEN == 26_112


def test_bitfit_layers_keeps_only_those_layers_biases(minilm):
    report = build_strategy("bitfit", layers=[2]).apply(minilm)
    body = set(report.trainable_names) - HEAD
    assert all(n.startswith("bert.encoder.layer.2.") and n.endswith(".bias") for n in body)
    assert report.trainable == PER_LAYER_BIASES


def test_bitfit_training_changes_only_biases(data_dir, tmp_path):
    module, _, changed = train_briefly(data_dir, tmp_path, "bitfit")
    assert changed == set(module.report.trainable_names)
    assert all(n.endswith(".bias") for n in changed - HEAD)


def test_bitfit_checkpoint_is_under_1mb_and_reload_and_resume_reproduce_exactly(data_dir, tmp_path):
    size = check_reload_and_resume(data_dir, tmp_path, "bitfit")
    assert size < 1_000_000, size
    stored = torch.load(tmp_path / "epoch1.ckpt", weights_only=False)
    keys = set(stored["state_dict"])
    assert len(keys) == 6 * 8 + 2 + 2  # biases of 6 layers (8 each), embedding LayerNorm + pooler, classifier
    assert all(k.endswith(".bias") or k.startswith("model.classifier.") for k in keys)
    assert stored["pet_lightning"]["strategy"] == {"name": "bitfit", "layers": None}
