"""Mixout: mixing toward the pretrained weights, on the real MiniLM."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.backbones import load_backbone
from pet_lightning.strategies import StrategyError, build_strategy
from pet_lightning.strategies.base import backbone_of
from pet_lightning.strategies.mixout import mix
from pet_lightning.tasks import get_task


def test_mix_takes_pretrained_elements_with_probability_p_and_keeps_the_expectation():
    torch.manual_seed(0)
    weight, target, p = torch.randn(200, 200), torch.randn(200, 200), 0.9
    mixed = mix(weight, target, p)
    took_target = torch.isclose(mixed, target, atol=1e-6)
    rescaled = torch.isclose(mixed, (weight - p * target) / (1 - p), atol=1e-5)
    assert bool((took_target | rescaled).all())
    assert abs(float(took_target.float().mean()) - p) < 0.01
    draws = torch.stack([mix(weight[:8, :8], target[:8, :8], p) for _ in range(20000)])
    assert torch.allclose(draws.mean(0), weight[:8, :8], atol=0.15)
    # The gradient reaches only the elements that were kept, scaled by 1 / (1 - p).
    leaf = weight.clone().requires_grad_(True)
    torch.manual_seed(1)
    mix(leaf, target, p).sum().backward()
    torch.manual_seed(1)
    keep = torch.empty_like(weight).bernoulli_(1 - p)
    assert torch.allclose(leaf.grad, keep / (1 - p))
    assert torch.equal(mix(weight, target, 0.0), weight)


def test_apply_patches_every_backbone_linear_keeps_names_and_remove_undoes_it():
    model = load_backbone("minilm", get_task("rte"))
    plain_keys = set(model.state_dict())
    pretrained = {k: v.clone() for k, v in model.state_dict().items()}
    strategy = build_strategy("mixout", p=0.9)
    report = strategy.apply(model)
    backbone = backbone_of(model)
    linears = [m for m in backbone.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6 * 6 + 1  # q, k, v, attention output, intermediate, output per layer + pooler
    assert all(torch.equal(m.mixout_target, m.weight) for m in linears)
    assert all(m.p == 0.0 for m in backbone.modules() if isinstance(m, nn.Dropout))
    assert model.dropout.p == 0.1, "the head keeps its dropout"
    assert set(model.state_dict()) == plain_keys, "checkpoints must look like full fine-tuning's"
    assert report.trainable == report.total
    # At the pretrained point every mixed weight equals the pretrained one; eval uses the weights as they are.
    batch = {"input_ids": torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])}
    model.eval()
    with torch.no_grad():
        eval_logits = model(**batch).logits
    report.remove()
    assert not any(hasattr(m, "mixout_target") or "forward" in vars(m) for m in model.modules())
    assert all(m.p == 0.1 for m in backbone.modules() if isinstance(m, nn.Dropout))
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, eval_logits)
    assert all(torch.equal(v, pretrained[k]) for k, v in model.state_dict().items())


def _train(data_dir: str, strategy: str | dict, backbone_dropout_off: bool) -> PETModule:
    L.seed_everything(0)
    module = PETModule(task="rte", strategy=strategy, learning_rate=1e-4, init_seed=0, warmup_ratio=0.0)
    if backbone_dropout_off:
        for submodule in backbone_of(module.model).modules():
            if isinstance(submodule, nn.Dropout):
                submodule.p = 0.0
    data = GlueDataModule(task="rte", data_dir=data_dir, batch_size=8, max_length=32, train_subset=24, order_seed=0)
    trainer = L.Trainer(accelerator="cpu", precision="32-true", max_steps=3, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    return module


def test_mixout_with_p0_trains_exactly_like_plain_training_with_backbone_dropout_off(data_dir):
    mixed = _train(data_dir, {"name": "mixout", "p": 0.0}, backbone_dropout_off=False)
    plain = _train(data_dir, "full", backbone_dropout_off=True)
    # The head's dropout (p=0.1) stays on in both: equal weights also mean equal random streams.
    assert mixed.model.dropout.p == plain.model.dropout.p == 0.1
    got, expected = mixed.model.state_dict(), plain.model.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    pretrained = load_backbone("minilm", get_task("rte")).state_dict()
    assert not torch.equal(got["bert.encoder.layer.0.output.dense.weight"],
                           pretrained["bert.encoder.layer.0.output.dense.weight"])


def test_bad_p_is_a_one_line_error():
    with pytest.raises(StrategyError, match=r"mixout p=1.0"):
        build_strategy("mixout", p=1.0)
