"""The exact-resume contract (docs/resume.md), one row per piece of state: a run resumed from its own checkpoint
ends bit-equal to the uninterrupted run.

Each row names the state piece it exercises, where that state lives, a configuration that depends on it and the
step whose checkpoint the resumed run starts from. Every run is 2 epochs of 3 steps on the tiny BERT with dropout
on, a warmup and a data order of its own; the resumed run starts from another global seed, so only the checkpoint
can make it agree. Compared at the end: every tensor of the model, the optimizer state, the learning rates and the
last validation metrics.

Pieces that need a process to die or Ray to restart a trial are covered where those exist: the auto-resume pointer
and preemption by ``tests/test_fault_injection.py``, the Ray epoch checkpoint by ``tests/sweeps/test_runner.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from pet_lightning import PETModule
from pet_lightning.callbacks import TwoStageTraining
from tests.helpers.data import small_glue
from tests.helpers.resume import differences
from tests.helpers.trainers import quiet_trainer, strategy_callbacks

STEPS_PER_EPOCH = 3  # 24 examples in batches of 8
EPOCHS = 2


@dataclass(frozen=True)
class Row:
    piece: str
    owner: str
    strategy: Any
    resume_step: int
    two_stage: bool = False
    data: dict[str, Any] = field(default_factory=dict)


CONTRACT = [
    Row("dropout stream of every rank; sampler position mid-epoch", "module.py, seeds.py, data/base.py, "
        "data/sampling.py", "full", resume_step=2),
    Row("loop state of a checkpoint written at an epoch's last batch", "loop_restart.py", "full", resume_step=3),
    Row("mask and packed AdamW moments of partly trained tensors", "checkpoint_format.py",
        {"name": "random", "fraction": 0.01}, resume_step=4),
    Row("Child-Tuning's Fisher mask", "strategies/child_tuning.py, callbacks/child_tuning.py",
        {"name": "child_tuning_d", "reserve_p": 0.3}, resume_step=4),
    Row("stage and optimizer overrides at the stage switch", "callbacks/two_stage.py", {"name": "lora", "r": 4},
        resume_step=3, two_stage=True),
    Row("stage-2 strategy and optimizer mid-epoch", "callbacks/two_stage.py", {"name": "lora", "r": 4},
        resume_step=5, two_stage=True),
    Row("AdaLoRA's importance scores and rank pattern", "callbacks/adalora.py", {"name": "adalora", "init_r": 6,
        "target_r": 2}, resume_step=4),
    Row("length-grouped order mid-epoch", "data/sampling.py", {"name": "lora", "r": 4, "dropout": 0.1},
        resume_step=4, data={"group_by_length": True}),
]


def fit(row: Row, backbone: str, data_dir: str, root: Path, ckpt_path: Path | None = None) -> L.Trainer:
    """One run of ``row``: uninterrupted (keeping a checkpoint every step) or resumed from ``ckpt_path``."""
    L.seed_everything(3 if ckpt_path is None else 4)
    data = small_glue(data_dir, backbone=backbone, batch_size=8, max_length=32, train_subset=24, order_seed=3,
                      **row.data)
    module = PETModule(backbone=backbone, task="rte", strategy=row.strategy, learning_rate=5e-3,
                       head_learning_rate=1e-3, warmup_ratio=0.2, init_seed=1, hidden_dropout=0.1)
    callbacks: list[L.Callback] = strategy_callbacks(row.strategy)
    if row.two_stage:
        callbacks.insert(0, TwoStageTraining(stage1_epochs=1, learning_rate=1e-3, warmup_ratio=0.2))
    if ckpt_path is None:
        callbacks.append(ModelCheckpoint(dirpath=root / "steps", filename="{step}", every_n_train_steps=1,
                                         save_top_k=-1))
    trainer = quiet_trainer(root, max_epochs=EPOCHS, limit_val_batches=1, precision="32-true", callbacks=callbacks,
                            enable_checkpointing=ckpt_path is None)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return trainer


def final_state(trainer: L.Trainer) -> dict[str, Any]:
    module = trainer.lightning_module
    optimizer = trainer.optimizers[0]
    return {
        "model": module.model.state_dict(),
        "optimizer": optimizer.state_dict()["state"],
        "lr": [group["lr"] for group in optimizer.param_groups],
        "metrics": {key: value for key, value in trainer.callback_metrics.items() if key.startswith("val/")},
        "step": trainer.global_step,
        "strategy": module.strategy.config_dict(),
    }




@pytest.mark.parametrize("row", CONTRACT, ids=[f"{row.owner.split(',')[0]}:{row.resume_step}" for row in CONTRACT])
def test_resumed_run_equals_the_uninterrupted_run(row: Row, tiny: str, data_dir: str, tmp_path: Path):
    whole = fit(row, tiny, data_dir, tmp_path / "whole")
    assert whole.global_step == EPOCHS * STEPS_PER_EPOCH
    checkpoint = tmp_path / "whole" / "steps" / f"step={row.resume_step}.ckpt"
    resumed = fit(row, tiny, data_dir, tmp_path / "resumed", ckpt_path=checkpoint)
    expected, got = final_state(whole), final_state(resumed)
    assert expected["metrics"], "no validation metric to compare"
    assert not differences(got, expected), f"{row.piece} ({row.owner}): {differences(got, expected)[:5]}"
