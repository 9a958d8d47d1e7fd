"""Stage-aware selection: a two-stage run keeps a stage-2 checkpoint and counts patience from stage 2."""

from __future__ import annotations

import lightning as L
import pytest
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.callbacks import SelectionCheckpoint, SelectionEarlyStopping, TwoStageTraining

STAGE1_EPOCHS = 2


def _fit(tmp_path, data_dir, callbacks, max_epochs=4):
    L.seed_everything(0)
    trainer = L.Trainer(accelerator="cpu", max_epochs=max_epochs, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1,
                        limit_train_batches=1, callbacks=callbacks, default_root_dir=tmp_path)
    module = PETModule(task="rte", strategy="frozen", learning_rate=1e-3, init_seed=0)
    data = GlueDataModule(task="rte", data_dir=data_dir, batch_size=8, max_length=32, train_subset=16,
                          eval_batch_size=8, protocol="dev_split")
    trainer.fit(module, datamodule=data)
    return trainer


def _saved_epochs(folder) -> list[int]:
    return sorted(int(p.stem.split("=")[1]) for p in folder.glob("epoch=*.ckpt"))


@pytest.mark.parametrize("select_stage1", [False, True])
def test_only_stage_two_epochs_can_become_the_kept_checkpoint(tmp_path, data_dir, select_stage1):
    keep = SelectionCheckpoint(dirpath=tmp_path / "kept", monitor="val/loss", save_top_k=-1, filename="{epoch}")
    two_stage = TwoStageTraining(stage1_epochs=STAGE1_EPOCHS, learning_rate=1e-5, select_stage1=select_stage1)
    _fit(tmp_path, data_dir, [two_stage, keep])
    # save_top_k=-1 saves every epoch that may select: all four, or only the stage-2 ones.
    expected = [0, 1, 2, 3] if select_stage1 else [2, 3]
    assert _saved_epochs(tmp_path / "kept") == expected
    assert int(keep.best_model_path.rsplit("epoch=", 1)[1].split(".")[0]) in expected


class WaitProbe(Callback):
    def __init__(self, stopper: EarlyStopping) -> None:
        self.stopper = stopper
        self.waits: list[int] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.waits.append(self.stopper.wait_count)


def test_early_stopping_counts_patience_from_stage_two_only(tmp_path, data_dir):
    # Patience 0 would stop at the first epoch without improvement; stage 1 must not count at all.
    stopper = SelectionEarlyStopping(monitor="val/loss", patience=0, check_on_train_epoch_end=False)
    probe = WaitProbe(stopper)
    trainer = _fit(tmp_path, data_dir, [TwoStageTraining(stage1_epochs=STAGE1_EPOCHS, learning_rate=1e-5), stopper,
                                        probe], max_epochs=3)
    assert trainer.current_epoch >= STAGE1_EPOCHS  # reached stage 2
    assert stopper.best_score.isfinite()  # stage 2 was checked
    # No check ran in stage 1: the best score is stage 2's first validation, not a stage-1 one.
    assert probe.waits[:STAGE1_EPOCHS] == [0] * STAGE1_EPOCHS


@pytest.mark.parametrize(
    "blind", [lambda: ModelCheckpoint(monitor="val/loss"), lambda: EarlyStopping(monitor="val/loss")]
)
def test_stage_blind_selectors_beside_two_stage_training_are_refused(tmp_path, data_dir, blind):
    with pytest.raises(ValueError, match="would select stage-1 epochs: use pet_lightning.callbacks.Selection"):
        _fit(tmp_path, data_dir, [TwoStageTraining(stage1_epochs=1), blind()], max_epochs=2)


class _Gate(Callback):
    """Any callback with may_select_now() gates selection; the two-stage callback is only one of them."""

    def __init__(self, open_: bool):
        self.open_ = open_

    def may_select_now(self) -> bool:
        return self.open_


def test_selection_asks_every_gate_and_two_stage_training_is_one():
    from types import SimpleNamespace

    from pet_lightning.callbacks.selection import SelectionGate, may_select

    two_stage = TwoStageTraining(stage1_epochs=1)
    assert isinstance(two_stage, SelectionGate) and not two_stage.may_select_now()
    two_stage.stage = 2
    assert two_stage.may_select_now()
    assert may_select(SimpleNamespace(callbacks=[two_stage, _Gate(True)]))
    assert not may_select(SimpleNamespace(callbacks=[two_stage, _Gate(False)]))
    assert may_select(SimpleNamespace(callbacks=[]))
