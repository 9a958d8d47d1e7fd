"""Init seed vs. data-order seed on the real model and real RTE data."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.seeds import STUDY_SEEDS, resolve_seeds


class Recorder(Callback):
    """Records the initial weights at train start, and every batch's examples and dropout RNG state."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = {k: v.detach().clone() for k, v in pl_module.model.named_parameters()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches = getattr(self, "batches", []) + [batch["idx"].tolist()]
        self.rng = getattr(self, "rng", []) + [torch.get_rng_state()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses = getattr(self, "losses", []) + [float(outputs["loss"])]


def _fit(tmp_path, data_dir, init_seed: int, order_seed: int, global_seed: int = 0) -> Recorder:
    # A different global seed each time: only the two explicit seeds may decide anything.
    L.seed_everything(global_seed)
    dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=4, max_length=32, train_subset=16,
                        protocol="dev_split", order_seed=order_seed)
    model = PETModule(task="rte", strategy="lora", learning_rate=1e-3, init_seed=init_seed)
    recorder = Recorder()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=3, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[recorder], default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    return recorder


@pytest.fixture(scope="module")
def fits(tmp_path_factory, data_dir) -> dict[str, Recorder]:
    tmp = tmp_path_factory.mktemp("seeds")
    return {
        "base": _fit(tmp, data_dir, init_seed=1, order_seed=7, global_seed=100),
        "other_order": _fit(tmp, data_dir, init_seed=1, order_seed=8, global_seed=200),
        "other_init": _fit(tmp, data_dir, init_seed=2, order_seed=7, global_seed=300),
    }


def _same_weights(a: Recorder, b: Recorder) -> bool:
    return all(torch.equal(a.initial[k], b.initial[k]) for k in a.initial)


def test_changing_only_the_order_seed_keeps_initial_weights(fits):
    assert _same_weights(fits["base"], fits["other_order"])
    assert fits["base"].batches != fits["other_order"].batches
    assert not torch.equal(fits["base"].rng[0], fits["other_order"].rng[0]), "dropout must follow the order seed"


def test_changing_only_the_init_seed_keeps_batch_order_and_dropout(fits):
    assert not _same_weights(fits["base"], fits["other_init"])
    # The head and the LoRA A matrices are what the init seed draws.
    base, other = fits["base"].initial, fits["other_init"].initial
    changed = {k for k in base if not torch.equal(base[k], other[k])}
    assert any("classifier" in k for k in changed) and any("lora_A" in k for k in changed)
    assert not any(k.endswith("query.base_layer.weight") for k in changed), "pretrained weights must not move"
    assert fits["base"].batches == fits["other_init"].batches
    assert all(torch.equal(a, b) for a, b in zip(fits["base"].rng, fits["other_init"].rng))


def test_same_seeds_repeat_the_run_exactly(tmp_path, data_dir, fits):
    again = _fit(tmp_path, data_dir, init_seed=1, order_seed=7, global_seed=999)
    assert _same_weights(again, fits["base"]) and again.batches == fits["base"].batches
    assert again.losses == fits["base"].losses


def test_seed_everything_alone_sets_both(data_dir):
    L.seed_everything(5)
    a = PETModule(task="rte", strategy="frozen")
    dm = GlueDataModule(task="rte", data_dir=data_dir)
    assert dm.resolved_order_seed() == 5
    L.seed_everything(5)
    b = PETModule(task="rte", strategy="frozen")
    assert torch.equal(a.model.classifier.weight, b.model.classifier.weight)


def test_resolve_seeds_modes():
    assert resolve_seeds(2222) == (2222, 2222)
    assert resolve_seeds(2222, "init", fixed=1111) == (2222, 1111)
    assert resolve_seeds(2222, "order", fixed=1111) == (1111, 2222)
    assert len(STUDY_SEEDS) == 20 and STUDY_SEEDS[0] == 1111 and STUDY_SEEDS[-1] == 10101010
    with pytest.raises(ValueError, match="unknown seed mode 'x': choose one of both, init, order"):
        resolve_seeds(1, "x")  # type: ignore[arg-type]


def test_init_seed_leaves_every_dropout_and_data_order_stream_alone(tiny, monkeypatch):
    """The model is built on the CPU under a forked CPU generator; seeding the CUDA generators too (what
    torch.manual_seed does) would make GPU dropout follow init_seed whenever no order seed re-seeds it."""
    seeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", seeded.append)
    monkeypatch.setattr(torch.cuda, "manual_seed", seeded.append)
    torch.manual_seed(123)
    seeded.clear()
    before = torch.get_rng_state()
    first = PETModule(task="rte", strategy="lora", backbone=tiny, init_seed=5)
    assert seeded == [] and torch.equal(torch.get_rng_state(), before)
    again = PETModule(task="rte", strategy="lora", backbone=tiny, init_seed=5)
    assert all(torch.equal(a, b) for a, b in zip(first.model.parameters(), again.model.parameters()))
