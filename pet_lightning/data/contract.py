"""What the model, its callbacks and the seeding read from a data module: one declared protocol.

:class:`~pet_lightning.data.base.TaskDataModule` (and so ``GlueDataModule`` / ``SuperGlueDataModule``) implements
:class:`TaskData`. A user's own LightningDataModule need not: :func:`task_data` then returns None and each reader
does without (no per-split metrics, global seeding, no protocol on the summary) or says that it needs a
pet_lightning data module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import lightning as L

from pet_lightning.data.protocol import SplitPlan
from pet_lightning.tasks import TaskSpec


@runtime_checkable
class TaskData(Protocol):
    """A data module that splits one task by a protocol and encodes its examples.

    Only plain attributes and methods, so ``isinstance`` checks it without loading anything (a property such as
    the collator would load the tokenizer).
    """

    spec: TaskSpec
    """The task (the model's task must be the same)."""
    protocol: str
    """The evaluation protocol that drew :attr:`plan` (``standard`` is leaky)."""
    max_length: int
    """Longest tokenized input."""
    order_seed: int | None
    """Seed of the training order and of dropout; None: the global seed applies."""
    eval_batch_size: int
    """Batch size of the evaluation loaders."""
    plan: SplitPlan | None
    """The split plan once set up, else None."""
    datasets: Mapping[str, Any]
    """Encoded splits once set up: ``train`` and ``predict`` datasets, ``val`` / ``test`` by evaluation split."""

    def eval_suffixes(self, stage: str) -> list[str]:
        """Metric-name suffix of each ``val`` or ``test`` dataloader, in dataloader order."""
        ...

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """One padded batch of encoded examples."""
        ...


def task_data(trainer: L.Trainer | None) -> TaskData | None:
    """The trainer's data module if it is a :class:`TaskData`, else None (no trainer, no data module, or a user's
    own module)."""
    datamodule = trainer.datamodule if trainer is not None else None
    return datamodule if isinstance(datamodule, TaskData) else None


__all__ = ["TaskData", "task_data"]
