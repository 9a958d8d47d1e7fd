"""Checkers of the exact-resume contract: a reloaded or resumed run reproduces the uninterrupted one bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from pet_lightning import GlueDataModule, PETModule
from tests.helpers.data import rte_data
from tests.helpers.trainers import quiet_trainer, strategy_callbacks


def check_reload_and_resume(data_dir: str, tmp_path: Path, strategy, learning_rate: float = 1e-3) -> int:
    """Reload (load_from_checkpoint, validate(ckpt_path=...)) and resume (fit(ckpt_path=...)) reproduce a run exactly.

    Dropout is on: the checkpoint carries the dropout stream, so the resumed run matches bit for bit. The schedule's
    length is pinned so that a 1-epoch and a 2-epoch trainer decay the learning rate identically.
    Returns the checkpoint's size in bytes.
    """

    def build() -> PETModule:
        module = PETModule(task="rte", strategy=strategy, learning_rate=learning_rate, weight_decay=0.1,
                           warmup_ratio=0.0, init_seed=0, hidden_dropout=0.1)
        module.optimizer_overrides = {"total_steps": 4}
        return module

    L.seed_everything(0)
    whole = build()
    whole_trainer = quiet_trainer(tmp_path / "whole", max_epochs=2, limit_val_batches=1)
    whole_trainer.fit(whole, datamodule=rte_data(data_dir))

    L.seed_everything(0)
    first = build()
    first_trainer = quiet_trainer(tmp_path / "first", max_epochs=1, limit_val_batches=1)
    first_trainer.fit(first, datamodule=rte_data(data_dir))
    path = tmp_path / "epoch1.ckpt"
    first_trainer.save_checkpoint(path)
    expected = first_trainer.validate(first, datamodule=rte_data(data_dir), verbose=False)[0]

    reloaded = PETModule.load_from_checkpoint(path)
    got = quiet_trainer(tmp_path, limit_val_batches=1).validate(reloaded, datamodule=rte_data(data_dir),
                                                                verbose=False)[0]
    assert got == expected
    for name, p in first.model.named_parameters():
        assert torch.equal(p, dict(reloaded.model.named_parameters())[name]), name
    got = quiet_trainer(tmp_path, limit_val_batches=1).validate(build(), datamodule=rte_data(data_dir),
                                                                ckpt_path=path, verbose=False)[0]
    assert got == expected

    L.seed_everything(0)
    resumed = build()
    resumed_trainer = quiet_trainer(tmp_path / "resumed", max_epochs=2, limit_val_batches=1)
    resumed_trainer.fit(resumed, datamodule=rte_data(data_dir), ckpt_path=path)
    whole_params = dict(whole.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        assert torch.equal(p, whole_params[name]), f"{name} differs after resuming"
    for key in ("val/loss", "val/accuracy"):
        assert torch.equal(resumed_trainer.callback_metrics[key], whole_trainer.callback_metrics[key]), key
    return path.stat().st_size


def fit_for_resume(tmp_path: Path, data_dir: str, strategy: dict, ckpt_path: Path | None = None,
                   callbacks=()) -> tuple[PETModule, L.Trainer]:
    """Two epochs of 3 steps on 24 RTE examples, dropout on, warmup and two learning rates, in 32-true.

    A different global seed for the resumed run: only the two explicit seeds and the checkpoint may matter."""
    L.seed_everything(3 if ckpt_path is None else 4)
    dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=8, max_length=48, train_subset=24, order_seed=3)
    # Dropout on: the checkpoint carries the dropout stream, so the resumed run draws the same masks.
    module = PETModule(task="rte", strategy=strategy, learning_rate=5e-3, head_learning_rate=1e-3,
                       warmup_ratio=0.2, init_seed=1, hidden_dropout=0.1)
    run = quiet_trainer(tmp_path, max_epochs=2, limit_val_batches=0, precision="32-true",
                        callbacks=[*callbacks, *strategy_callbacks(strategy)], enable_checkpointing=bool(callbacks))
    run.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module, run


def assert_resume_equals_uninterrupted(tmp_path: Path, data_dir: str, strategy: dict) -> None:
    """A 2-epoch run with dropout equals the same run resumed from its own end-of-epoch-1 checkpoint (optimizer,
    schedule, dropout stream)."""
    every_epoch = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    whole, _ = fit_for_resume(tmp_path / "whole", data_dir, strategy, callbacks=[every_epoch])
    resumed, second = fit_for_resume(tmp_path / "second", data_dir, strategy,
                                     ckpt_path=tmp_path / "ckpt" / "epoch=0.ckpt")
    assert second.global_step == 6
    expected = dict(whole.model.named_parameters())
    for name in whole.report.trainable_names:
        assert torch.equal(dict(resumed.model.named_parameters())[name], expected[name]), name
    opt_whole, opt_resumed = whole.optimizers().optimizer, resumed.optimizers().optimizer
    assert [g["lr"] for g in opt_whole.param_groups] == [g["lr"] for g in opt_resumed.param_groups]


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths at which two nested structures (dicts / lists / tensors / plain values) differ; tensors bit for bit."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where} keys {sorted(set(a) ^ set(b), key=str)[:3]}"]
        return [d for key in a for d in differences(a[key], b[key], f"{where}/{key}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where} length"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}/{i}")]
    return [] if a == b else [where]
