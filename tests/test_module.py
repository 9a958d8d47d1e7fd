"""PETModule on the real offline model and real RTE data."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.backbones import BackboneError, load_backbone, resolve_backbone
from pet_lightning.tasks import get_task
from tests.helpers.trainers import quiet_trainer


def test_offline_default_resolves_to_the_packaged_minilm():
    model = load_backbone("minilm", get_task("rte"))
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.training, "dropout must be on after loading"
    assert sum(p.numel() for p in model.bert.parameters()) == 22_713_216
    assert resolve_backbone("minilm").endswith("model")


def test_missing_backbone_is_a_one_line_error(tmp_path):
    with pytest.raises(BackboneError, match=r"no local folder .* and the hub is unreachable"):
        load_backbone(str(tmp_path / "nowhere"), get_task("rte"))


def test_optimizer_gets_only_trainable_parameters_and_no_decay_on_bias_and_layernorm(tmp_path):
    module = PETModule(task="rte", strategy="frozen", learning_rate=1e-3, head_learning_rate=5e-3)
    module.trainer = quiet_trainer(tmp_path, max_steps=10)
    groups = module.parameter_groups(1e-3, 5e-3)
    params = [p for group in groups for p in group["params"]]
    assert {id(p) for p in params} == {id(p) for p in module.model.classifier.parameters()}
    by_name = {group["name"]: group for group in groups}
    assert by_name["head"]["lr"] == 5e-3 and by_name["head"]["weight_decay"] == 0.01
    assert by_name["head_no_decay"]["weight_decay"] == 0.0
    full = PETModule(task="rte", strategy="full")
    names = {g["name"]: g for g in full.parameter_groups(1e-5, 1e-5)}
    no_decay_ids = {id(p) for p in names["body_no_decay"]["params"]}
    assert id(full.model.bert.encoder.layer[0].attention.output.LayerNorm.weight) in no_decay_ids
    assert id(full.model.bert.encoder.layer[0].attention.self.query.bias) in no_decay_ids
    assert id(full.model.bert.encoder.layer[0].attention.self.query.weight) not in no_decay_ids


def test_warmup_then_linear_decay(tmp_path):
    module = PETModule(task="rte", strategy="frozen", learning_rate=1e-3, warmup_ratio=0.1)
    module.trainer = quiet_trainer(tmp_path, max_steps=100)
    module.optimizer_overrides = {"total_steps": 100}
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[10] == pytest.approx(1e-3) and lrs[55] == pytest.approx(0.5e-3)


def test_short_real_finetune_lowers_training_loss_and_logs_val_accuracy(tmp_path, data_dir):
    L.seed_everything(0)
    dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=16, max_length=64, train_subset=64)
    module = PETModule(task="rte", strategy="full", learning_rate=5e-5, warmup_ratio=0.0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    module.eval()
    with torch.no_grad():
        before = float(module.loss(module(batch), batch["label"]))
    module.train()
    trainer = quiet_trainer(tmp_path, max_epochs=6, limit_val_batches=2)
    trainer.fit(module, datamodule=dm)
    module.eval()
    with torch.no_grad():
        after = float(module.loss(module(batch), batch["label"]))
    assert after < before - 0.05, (before, after)
    assert 0.0 <= float(trainer.callback_metrics["val/accuracy"]) <= 1.0
    assert "val/headline" in trainer.callback_metrics and "val/loss" in trainer.callback_metrics


def test_checkpoint_holds_only_trainable_tensors_and_reproduces_metrics(tmp_path, data_dir):
    L.seed_everything(0)
    dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=16, max_length=64, train_subset=32)
    module = PETModule(task="rte", strategy="frozen", learning_rate=1e-3)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=3, precision="32-true")
    trainer.fit(module, datamodule=dm)
    path = tmp_path / "frozen.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    assert set(checkpoint["state_dict"]) == {"model.classifier.weight", "model.classifier.bias"}
    assert checkpoint["pet_lightning"]["strategy"] == {"name": "frozen"}
    assert path.stat().st_size < 100_000
    before = trainer.validate(module, datamodule=dm, verbose=False)[0]
    restored = PETModule.load_from_checkpoint(path)
    assert torch.equal(restored.model.classifier.weight, module.model.classifier.weight)
    after = quiet_trainer(tmp_path, limit_val_batches=3, precision="32-true").validate(restored, datamodule=dm,
                                                                                       verbose=False)[0]
    assert after == before
