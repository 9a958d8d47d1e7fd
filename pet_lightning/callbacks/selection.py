"""Model selection that knows about two-stage training.

EH-FT and LP-FT report the fine-tuned model; stage 1 only initialises the head. A plain ``ModelCheckpoint`` would
happily keep a stage-1 epoch (a model the study never reports), and a plain ``EarlyStopping`` would count stage-1
epochs against its patience and could stop before stage 2 begins. These two callbacks skip the epochs that may
not select, as told by every callback implementing :class:`SelectionGate` (the stage-1 epochs of a
:class:`~pet_lightning.callbacks.TwoStageTraining` run, unless its ``select_stage1`` is set). Without such a callback
they are the plain Lightning callbacks.

:class:`~pet_lightning.callbacks.TwoStageTraining` refuses to run beside a plain monitored ``ModelCheckpoint`` or
``EarlyStopping``, so a config cannot fall back to the stage-blind ones silently.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint


@runtime_checkable
class SelectionGate(Protocol):
    """A callback that may veto selection on some epochs (two-stage training's stage 1)."""

    def may_select_now(self) -> bool:
        """Whether the current validation may select a checkpoint (and count towards early stopping)."""
        ...


def may_select(trainer: L.Trainer) -> bool:
    """Whether the current validation may select a checkpoint: every :class:`SelectionGate` callback agrees."""
    return all(callback.may_select_now() for callback in trainer.callbacks if isinstance(callback, SelectionGate))


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


__all__ = ["SelectionCheckpoint", "SelectionEarlyStopping", "SelectionGate", "may_select", "stage_blind_selectors"]
