"""The exact linear probe on the real MiniLM: STS-B (ridge) and CB (logistic), against scikit-learn run by hand."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

from pet_lightning import PETModule
from pet_lightning.backbones import build_from_config
from pet_lightning.callbacks import ExactLinearProbe, TwoStageTraining
from pet_lightning.data import GlueDataModule, SuperGlueDataModule
from pet_lightning.probes import DEFAULT_STRENGTHS, ProbeError, linear_head
from pet_lightning.strategies.base import backbone_of, unwrap
from pet_lightning.tasks import get_task
from tests.helpers.backbones import tiny_configs
from tests.helpers.trainers import quiet_trainer


def _small(module_cls, task: str, data_dir: str, train: int, evaluate: int, max_length: int):
    """dev_split data with the selection and report halves cut to ``evaluate`` examples each (test speed)."""
    data = module_cls(task=task, data_dir=data_dir, batch_size=16, max_length=max_length, train_subset=train,
                      order_seed=0, protocol="dev_split")
    data.setup("fit")
    data.plan.selection = {name: rows[:evaluate] for name, rows in data.plan.selection.items()}
    data.plan.report = {name: rows[:evaluate] for name, rows in data.plan.report.items()}
    return data


def _pooler_features(data, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The packaged MiniLM's pooler output, computed here without the module (an independent path)."""
    model = PETModule(task=data.task, strategy="frozen", init_seed=0).model.eval()
    dataset = data.datasets["train"] if split == "train" else next(iter(data.datasets[split].values()))
    features, labels = [], []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=64, collate_fn=data.collator):
            out = backbone_of(model)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     token_type_ids=batch["token_type_ids"])
            features.append(out.pooler_output)
            labels.append(batch["label"])
    return torch.cat(features).double().numpy(), torch.cat(labels).numpy()


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_exact_ridge_beats_the_sgd_head_and_its_strength_equals_a_hand_run_grid(tmp_path, data_dir):
    data = _small(GlueDataModule, "stsb", data_dir, train=200, evaluate=100, max_length=48)
    scores = {}
    for name, callbacks in (("sgd", []), ("exact", [ExactLinearProbe()])):
        L.seed_everything(0)
        module = PETModule(task="stsb", strategy="frozen", learning_rate=1e-3, init_seed=0)
        trainer = quiet_trainer(tmp_path / name, precision="32-true", callbacks=callbacks, max_epochs=2)
        trainer.fit(module, datamodule=data)
        scores[name] = trainer.test(module, datamodule=data, verbose=False)[0]["test/pearson"]
        if name == "exact":
            probe, exact = callbacks[0], module
    assert scores["exact"] > scores["sgd"] + 0.1, scores

    train, selection, report = (_pooler_features(data, split) for split in ("train", "val", "test"))
    losses = {}
    for alpha in DEFAULT_STRENGTHS:
        scaler = StandardScaler().fit(train[0])
        fit = Ridge(alpha=alpha).fit(scaler.transform(train[0]), train[1])
        losses[alpha] = np.mean((fit.predict(scaler.transform(selection[0])) - selection[1]) ** 2)
    chosen = min(losses, key=losses.get)
    assert probe.result.strength == chosen
    assert probe.result.selection_loss == pytest.approx(losses[chosen], rel=1e-5)
    # The module's head is the fitted pipeline (folded scaling), and it stayed there (keep_solution).
    scaler = StandardScaler().fit(train[0])
    expected = Ridge(alpha=chosen).fit(scaler.transform(train[0]), train[1]).predict(scaler.transform(report[0]))
    head = linear_head(exact.model)
    got = (torch.as_tensor(report[0], dtype=torch.float32) @ head.weight.T + head.bias).squeeze(-1).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=2e-4)
    assert scores["exact"] == pytest.approx(_pearson(expected, report[1]), abs=1e-4)


def test_logistic_probe_accuracy_on_cb_equals_sklearn_on_the_same_features(tmp_path, data_dir):
    data = _small(SuperGlueDataModule, "cb", data_dir, train=96, evaluate=28, max_length=96)
    module = PETModule(task="cb", strategy="frozen", init_seed=0)
    probe = ExactLinearProbe()
    trainer = quiet_trainer(tmp_path, precision="32-true", callbacks=[probe], max_epochs=1)
    trainer.fit(module, datamodule=data)
    got = trainer.test(module, datamodule=data, verbose=False)[0]["test/accuracy"]

    train, selection, report = (_pooler_features(data, split) for split in ("train", "val", "test"))
    losses = {}
    for strength in DEFAULT_STRENGTHS:
        scaler = StandardScaler().fit(train[0])
        fit = LogisticRegression(C=1 / strength, max_iter=2000).fit(scaler.transform(train[0]), train[1])
        probabilities = fit.predict_proba(scaler.transform(selection[0]))
        losses[strength] = -np.mean(np.log(probabilities[np.arange(len(selection[1])), selection[1]]))
    chosen = min(losses, key=losses.get)
    assert probe.result.strength == chosen
    scaler = StandardScaler().fit(train[0])
    fit = LogisticRegression(C=1 / chosen, max_iter=2000).fit(scaler.transform(train[0]), train[1])
    expected = float(np.mean(fit.predict(scaler.transform(report[0])) == report[1]))
    assert got == pytest.approx(expected, abs=1e-6)
    assert len(set(fit.predict(scaler.transform(report[0])).tolist())) > 1, "a one-class probe would test little"


class HeadAt(L.Callback):
    """Listed after the probe: the head after each training epoch."""

    def __init__(self):
        self.heads: list[torch.Tensor] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.heads.append(linear_head(pl_module.model).weight.detach().clone())


def test_lp_ft_stage_one_is_the_exact_probe_and_sgd_stays_available(tmp_path, data_dir):
    data = _small(GlueDataModule, "stsb", data_dir, train=64, evaluate=32, max_length=32)
    probe, seen = ExactLinearProbe(), HeadAt()
    module = PETModule(task="stsb", strategy="frozen", learning_rate=1e-2, init_seed=0, warmup_ratio=0.0)
    switch = TwoStageTraining(stage1_epochs=2, learning_rate=1e-4)
    quiet_trainer(tmp_path, precision="32-true", callbacks=[switch, probe, seen], max_epochs=3,
                  limit_val_batches=1).fit(module, datamodule=data)
    # Stage 1 (two epochs at a large learning rate) kept the solved head; stage 2 fine-tuned it.
    assert torch.equal(seen.heads[0], seen.heads[1]) and not torch.equal(seen.heads[1], seen.heads[2])
    assert switch.stage == 2 and probe.solved

    moving, seen = ExactLinearProbe(keep_solution=False), HeadAt()
    module = PETModule(task="stsb", strategy="frozen", learning_rate=1e-2, init_seed=0, warmup_ratio=0.0)
    quiet_trainer(tmp_path / "sgd", precision="32-true", callbacks=[moving, seen], max_epochs=2,
                  limit_val_batches=1).fit(module, datamodule=data)
    assert not torch.equal(seen.heads[0], seen.heads[1])


def test_refusals_are_one_line_errors(tmp_path, data_dir):
    data = _small(GlueDataModule, "stsb", data_dir, train=16, evaluate=16, max_length=32)
    with pytest.raises(ProbeError, match="head='mlp' is not linear"):
        quiet_trainer(tmp_path, precision="32-true", callbacks=[ExactLinearProbe()], max_epochs=1).fit(
            PETModule(task="stsb", strategy="frozen", head="mlp"), datamodule=data)
    with pytest.raises(ProbeError, match="frozen encoder"):
        quiet_trainer(tmp_path, precision="32-true", callbacks=[ExactLinearProbe()], max_epochs=1).fit(
            PETModule(task="stsb", strategy="bitfit"), datamodule=data)
    with pytest.raises(ProbeError, match="copa scores each choice"):
        trainer = quiet_trainer(tmp_path, precision="32-true")
        ExactLinearProbe().setup(trainer, PETModule(task="copa", strategy="frozen"), "fit")
    torch.manual_seed(0)
    roberta = build_from_config(tiny_configs()["roberta"], get_task("rte"))
    with pytest.raises(ProbeError, match="classifier.dense, classifier.out_proj"):
        linear_head(roberta)
    bert = PETModule(task="rte", strategy="frozen").model
    assert linear_head(bert) is unwrap(bert).classifier
    with pytest.raises(ProbeError, match="strengths"):
        ExactLinearProbe(strengths=[0.0])
