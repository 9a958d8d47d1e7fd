"""Model selection that knows about two-stage training.

EH-FT and LP-FT report the fine-tuned model; stage 1 only initialises the head. A plain ``ModelCheckpoint`` would
happily keep a stage-1 epoch (a model the study never reports), and a plain ``EarlyStopping`` would count stage-1
epochs against its patience and could stop before stage 2 begins. These two callbacks skip the epochs that may
not select: the stage-1 epochs of a :class:`~pet_lightning.callbacks.TwoStageTraining` run, unless its
``select_stage1`` is set. Without two-stage training they are the plain Lightning callbacks.

:class:`~pet_lightning.callbacks.TwoStageTraining` refuses to run beside a plain monitored ``ModelCheckpoint`` or
``EarlyStopping``, so a config cannot fall back to the stage-blind ones silently.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint


def may_select(trainer: L.Trainer) -> bool:
    """Whether the current validation may select a checkpoint (and count towards early stopping)."""
    from pet_lightning.callbacks.two_stage import TwoStageTraining

    for callback in trainer.callbacks:
        if isinstance(callback, TwoStageTraining):
            return callback.stage == 2 or callback.select_stage1
    return True


class SelectionCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose top-k (the kept checkpoint) considers only epochs that may select; ``save_last``
    and every other behaviour are Lightning's."""

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates) -> None:
        if may_select(trainer):
            super()._save_topk_checkpoint(trainer, monitor_candidates)


class SelectionEarlyStopping(EarlyStopping):
    """``EarlyStopping`` that neither counts nor stops on epochs that may not select (stage 1 of a two-stage
    run): patience starts with stage 2."""

    def _should_skip_check(self, trainer: L.Trainer) -> bool:
        return super()._should_skip_check(trainer) or not may_select(trainer)


def stage_blind_selectors(trainer: L.Trainer) -> list[str]:
    """Names of monitored checkpoint / early-stopping callbacks that would select on stage-1 epochs."""
    blind = []
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint) and not isinstance(callback, SelectionCheckpoint):
            if callback.monitor is not None:
                blind.append(f"ModelCheckpoint(monitor={callback.monitor!r})")
        elif isinstance(callback, EarlyStopping) and not isinstance(callback, SelectionEarlyStopping):
            blind.append(f"EarlyStopping(monitor={callback.monitor!r})")
    return blind


__all__ = ["SelectionCheckpoint", "SelectionEarlyStopping", "may_select", "stage_blind_selectors"]
