"""Bottleneck adapters (Pfeiffer / Houlsby): placement, counts, near-identity start, removal, training, resume."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from transformers import BertConfig

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.backbones import build_from_config, load_backbone
from pet_lightning.strategies import StrategyError, build_strategy
from pet_lightning.strategies.adapter import AdaptedLinear
from pet_lightning.tasks import get_task
from tests.helpers.backbones import HIDDEN, MINILM_LAYERS, MINILM_TOTAL, tiny_model
from tests.helpers.resume import assert_resume_equals_uninterrupted
from tests.helpers.trainers import quiet_trainer
from tests.strategies.conftest import HEAD


def adapter_names(*sites: str) -> set[str]:
    return {
        f"bert.encoder.layer.{i}.{site}.adapter.{proj}.{kind}"
        for i in range(MINILM_LAYERS) for site in sites for proj in ("down", "up") for kind in ("weight", "bias")
    }


@pytest.mark.parametrize(("style", "expected"), [("pfeiffer", 894_528), ("houlsby", 1_789_056)])
def test_bert_base_counts_match_the_literature(style, expected):
    report = build_strategy("adapter", style=style, reduction_factor=16).apply(
        build_from_config(BertConfig(), get_task("rte"))
    )
    assert report.trainable == expected
    assert report.total == 109_482_240  # bert-base with pooler, adapters excluded


@pytest.mark.parametrize(("style", "sites"), [("pfeiffer", ("output.dense",)),
                                              ("houlsby", ("attention.output.dense", "output.dense"))])
def test_trainable_set_is_exactly_the_adapters_plus_head(minilm, style, sites):
    report = build_strategy("adapter", style=style, reduction_factor=16).apply(minilm)
    trainable = {n for n, p in report.model.named_parameters() if p.requires_grad}
    assert trainable == adapter_names(*sites) | HEAD == set(report.trainable_names)
    bottleneck = HIDDEN // 16
    assert report.trainable == MINILM_LAYERS * len(sites) * (2 * HIDDEN * bottleneck + bottleneck + HIDDEN)
    assert report.total == MINILM_TOTAL
    assert set(report.head_names) == HEAD


def test_adapters_start_near_identity(minilm):
    ids = torch.randint(1000, 2000, (2, 10))
    minilm.eval()
    with torch.no_grad():
        plain = minilm(input_ids=ids).logits.clone()
        adapted = build_strategy("adapter", style="houlsby").apply(minilm).model.eval()(input_ids=ids).logits
    assert not torch.equal(plain, adapted)
    assert torch.allclose(plain, adapted, atol=5e-3), (plain - adapted).abs().max()


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta-v2", "electra", "distilbert"])
def test_houlsby_puts_two_adapters_in_every_layer_of_each_family(family):
    model = tiny_model(family)
    report = build_strategy("adapter", style="houlsby", reduction_factor=4).apply(model)
    adapted = [m for m in report.model.modules() if isinstance(m, AdaptedLinear)]
    assert len(adapted) == 2 * 2
    assert report.trainable == len(adapted) * (2 * 16 * 4 + 4 + 16)
    logits = report.model(input_ids=torch.randint(5, 90, (2, 7))).logits
    logits.sum().backward()
    assert all(p.grad is not None for n, p in report.model.named_parameters() if ".adapter." in n)


def test_remove_restores_the_plain_model(minilm):
    strategy = build_strategy("adapter", style="houlsby")
    report = strategy.apply(minilm)
    plain = report.remove()
    fresh = load_backbone("minilm", get_task("rte"))
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in fresh.named_parameters()]
    assert not any(isinstance(m, AdaptedLinear) for m in plain.modules())


def test_bad_adapter_settings_are_one_line_errors():
    for settings, message in [({"style": "parallel"}, "adapter style 'parallel' is unknown: use pfeiffer or houlsby"),
                              ({"reduction_factor": 0}, "adapter reduction_factor=0: use a positive factor"),
                              ({"activation": "cube"}, "adapter activation 'cube' is unknown")]:
        with pytest.raises(StrategyError, match=message) as err:
            build_strategy("adapter", **settings)
        assert "\n" not in str(err.value)


def test_fifty_real_steps_lower_the_loss_and_move_the_adapters(tmp_path, data_dir):
    L.seed_everything(0)
    dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=8, max_length=64, train_subset=80)
    dm.setup("fit")
    module = PETModule(task="rte", strategy={"name": "adapter", "style": "pfeiffer", "reduction_factor": 16},
                       learning_rate=2e-3, head_learning_rate=1e-3, warmup_ratio=0.0, init_seed=0)
    batches = list(dm.train_dataloader())
    module.eval()
    with torch.no_grad():
        before = sum(float(module.loss(module(b), b["label"])) for b in batches) / len(batches)
    start = {n: p.detach().clone() for n, p in module.model.named_parameters() if ".adapter." in n}
    module.train()
    quiet_trainer(tmp_path, max_steps=50, limit_val_batches=0).fit(module, datamodule=dm)
    module.eval()
    with torch.no_grad():
        after = sum(float(module.loss(module(b), b["label"])) for b in batches) / len(batches)
    assert after < before - 0.02, (before, after)
    assert all(not torch.equal(p, start[n]) for n, p in module.model.named_parameters() if n in start)


def test_checkpoint_holds_adapters_and_head_and_reloads_identical_logits(tmp_path, data_dir):
    dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=8, max_length=64, train_subset=16)
    module = PETModule(task="rte", strategy={"name": "adapter", "style": "houlsby"}, learning_rate=1e-2)
    run = quiet_trainer(tmp_path, max_steps=2, limit_val_batches=0, precision="32-true")
    run.fit(module, datamodule=dm)
    run.save_checkpoint(tmp_path / "adapter.ckpt")
    checkpoint = torch.load(tmp_path / "adapter.ckpt", weights_only=False)
    assert set(checkpoint["state_dict"]) == {f"model.{n}" for n in adapter_names("attention.output.dense",
                                                                                  "output.dense") | HEAD}
    restored = PETModule.load_from_checkpoint(tmp_path / "adapter.ckpt").eval()
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        assert torch.equal(module.eval()(batch), restored(batch))


def test_adapter_resume_equals_uninterrupted(tmp_path, data_dir):
    assert_resume_equals_uninterrupted(tmp_path, data_dir, {"name": "adapter", "style": "pfeiffer"})
