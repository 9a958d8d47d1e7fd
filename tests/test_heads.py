"""The EH-FT MLP head: shapes for every task kind and encoder family, init, what trains, saving, two stages."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from pet_lightning import PETModule
from pet_lightning.backbones import build_from_config
from pet_lightning.callbacks import TwoStageTraining
from pet_lightning.data import SuperGlueDataModule
from pet_lightning.heads import HeadError, MLPHead, install_head
from pet_lightning.strategies import build_strategy
from pet_lightning.strategies.base import head_parameters, unwrap
from pet_lightning.tasks import get_task
from tests.helpers.backbones import tiny_configs
from tests.helpers.data import small_glue
from tests.helpers.probes import HeadAtBoundary
from tests.helpers.trainers import quiet_trainer

MLP_NAMES = {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
             "classifier.out_proj.bias"}
# DistilBERT's forward runs pre_classifier -> ReLU -> dropout -> classifier: those two are the MLP's layers.
DISTILBERT_NAMES = {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"}


def _inputs(task: str, batch: int = 3, length: int = 7) -> dict[str, torch.Tensor]:
    shape = (batch, 2, length) if get_task(task).kind == "multiple_choice" else (batch, length)
    ids = torch.randint(3, 100, shape, generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta-v2", "electra", "distilbert"])
@pytest.mark.parametrize(("task", "outputs"), [("rte", 2), ("cb", 3), ("stsb", 1), ("copa", 2)])
def test_mlp_head_shapes_and_head_parameters_for_every_family_and_task_kind(family, task, outputs):
    spec = get_task(task)
    torch.manual_seed(0)
    model = install_head(build_from_config(tiny_configs()[family], spec), spec, "mlp", hidden_size=24, init_std=0.02)
    logits = model(**_inputs(task)).logits
    # copa: one score per choice, two choices.
    assert logits.shape == (3, outputs)
    names = set(head_parameters(model))
    assert names == (DISTILBERT_NAMES if family == "distilbert" else MLP_NAMES)
    shapes = sorted(tuple(p.shape) for p in head_parameters(model).values())
    per_choice = 1 if spec.kind == "multiple_choice" else outputs
    assert shapes == sorted([(24, 16), (24,), (per_choice, 24), (per_choice,)])
    # The head's output depends on its first layer: the forward really runs through the MLP.
    first = "pre_classifier.weight" if family == "distilbert" else "classifier.dense.weight"
    with torch.no_grad():
        dict(model.named_parameters())[first].mul_(2.0)
    assert not torch.allclose(model(**_inputs(task)).logits, logits)


def test_mlp_init_statistics_and_init_seed():
    module = PETModule(task="stsb", strategy="frozen", head="mlp", init_seed=3)
    head = unwrap(module.model).classifier
    assert isinstance(head, MLPHead)
    assert head.dense.weight.shape == (2048, 384) and head.out_proj.weight.shape == (1, 2048)
    weights = head.dense.weight.detach()
    assert abs(weights.std().item() - 0.005) < 0.005 * 0.01  # 786k draws: std within 1%
    assert abs(weights.mean().item()) < 2e-5
    assert abs(head.out_proj.weight.std().item() - 0.005) < 0.005 * 0.05
    assert torch.count_nonzero(head.dense.bias) == 0 and torch.count_nonzero(head.out_proj.bias) == 0
    again = PETModule(task="stsb", strategy="frozen", head="mlp", init_seed=3)
    other = PETModule(task="stsb", strategy="frozen", head="mlp", init_seed=4, head_hidden_size=64, head_init_std=0.1)
    assert torch.equal(unwrap(again.model).classifier.dense.weight, weights)
    assert unwrap(other.model).classifier.dense.weight.shape == (64, 384)
    assert abs(unwrap(other.model).classifier.dense.weight.std().item() - 0.1) < 0.01


def test_frozen_trains_exactly_the_mlp_and_peft_keeps_it():
    module = PETModule(task="rte", strategy="frozen", head="mlp", init_seed=0)
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable == set(module.report.head_names) == MLP_NAMES
    assert module.report.head == 384 * 2048 + 2048 + 2048 * 2 + 2
    lora = PETModule(task="rte", strategy="lora", head="mlp", init_seed=0)
    head = set(lora.report.head_names)
    # peft wraps the MLP in modules_to_save: its trained copy is the head.
    assert len(head) == 4 and all(".modules_to_save." in n and ".classifier." in n for n in head)
    assert head <= {n for n, p in lora.model.named_parameters() if p.requires_grad}


def test_bad_head_settings_are_one_line_errors():
    with pytest.raises(HeadError, match="head='linear'"):
        PETModule(task="rte", head="linear")
    with pytest.raises(HeadError, match="head_hidden_size"):
        PETModule(task="rte", head="mlp", head_hidden_size=0)
    with pytest.raises(HeadError, match="head_init_std"):
        PETModule(task="rte", head="mlp", head_init_std=0.0)


def _cb(data_dir: str) -> SuperGlueDataModule:
    return SuperGlueDataModule(task="cb", data_dir=data_dir, batch_size=8, max_length=64, train_subset=32,
                               order_seed=0)


def _mean_loss(module: PETModule, data) -> float:
    module.eval()
    with torch.no_grad():
        losses = [module.loss(module(batch), batch["label"]).item() for batch in data.train_dataloader()]
    module.train()
    return sum(losses) / len(losses)


def test_mlp_trains_with_bitfit_on_real_cb_and_reloads_with_identical_logits(tmp_path, data_dir):
    L.seed_everything(0)
    data = _cb(data_dir)
    data.setup("fit")
    module = PETModule(task="cb", strategy="bitfit", head="mlp", learning_rate=1e-3, warmup_ratio=0.0, init_seed=0)
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    start = _mean_loss(module, data)
    trainer = quiet_trainer(tmp_path, precision="32-true", max_epochs=4, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    assert _mean_loss(module, data) < start - 0.05
    changed = {n for n, p in module.model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed >= MLP_NAMES and all(n in MLP_NAMES or n.endswith("bias") for n in changed)

    path = tmp_path / "mlp.ckpt"
    trainer.save_checkpoint(path)
    reloaded = PETModule.load_from_checkpoint(path).eval()
    module.eval()
    batch = next(iter(data.train_dataloader()))
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        assert torch.equal(reloaded(inputs), module(inputs))
    assert isinstance(unwrap(reloaded.model).classifier, MLPHead)


def test_two_stage_copies_only_the_mlp_weights(tmp_path, data_dir):
    data = small_glue(data_dir)
    module = PETModule(task="rte", strategy="bitfit", head="mlp", learning_rate=1e-2, init_seed=0, warmup_ratio=0.0)
    probe = HeadAtBoundary()
    callback = TwoStageTraining(stage1_epochs=1, keep_head_bias=False)
    run = quiet_trainer(tmp_path, precision="32-true", max_epochs=2, limit_val_batches=0, callbacks=[callback, probe])
    run.fit(module, datamodule=data)
    stage1, stage2 = probe.seen["stage1"], probe.seen["stage2"]
    assert set(stage2) == {"dense.weight", "dense.bias", "out_proj.weight", "out_proj.bias"}
    for name in ("dense.weight", "out_proj.weight"):
        assert torch.equal(stage2[name], stage1[name])
    for name in ("dense.bias", "out_proj.bias"):
        assert stage1[name].abs().sum() > 0, "stage 1 must move the biases for the reset to show"
        assert torch.count_nonzero(stage2[name]) == 0  # a fresh MLP's biases
    assert isinstance(unwrap(module.model).classifier, MLPHead) and module.strategy.name == "full"
    assert set(module.report.head_names) == MLP_NAMES


def test_strategy_apply_on_an_mlp_model_finds_the_mlp_as_head():
    spec = get_task("rte")
    torch.manual_seed(0)
    model = install_head(build_from_config(tiny_configs()["bert"], spec), spec, "mlp", hidden_size=8)
    report = build_strategy("bitfit").apply(model)
    assert set(report.head_names) == MLP_NAMES
    assert set(report.trainable_names) >= MLP_NAMES


def test_frozen_mlp_trains_on_cached_features(tmp_path, data_dir):
    data = small_glue(data_dir)
    module = PETModule(task="rte", strategy="frozen", head="mlp", learning_rate=1e-3, init_seed=0)
    before = unwrap(module.model).classifier.dense.weight.detach().clone()
    quiet_trainer(tmp_path, precision="32-true", max_epochs=3, limit_val_batches=0).fit(module, datamodule=data)
    # The cache's first-batch check passed with the MLP; the encoder ran only in the first epoch (2 batches).
    assert module.caches_features() and module.feature_cache.checked and module.feature_cache.encoder_calls == 2
    assert not torch.equal(unwrap(module.model).classifier.dense.weight, before)
