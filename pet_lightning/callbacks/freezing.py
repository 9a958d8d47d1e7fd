"""Parameter-group freezing as a Lightning callback, in the spirit of ``BaseFinetuning``.

``StrategyFreezing`` asserts the module's strategy before the optimizer is built (so the optimizer only ever
sees the parameters that train), refuses to train when nothing would, and logs the counts (also to W&B as
run config). Subclasses change the trainable set during training through :meth:`finetune_function`.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.utilities import rank_zero_info
from torch.optim import Optimizer


class StrategyFreezing(BaseFinetuning):
    """Apply ``pl_module.strategy`` before training and log what trains.

    Works with any LightningModule that has ``freeze_to_strategy()`` returning a report with ``trainable``,
    ``total``, ``percent`` and ``head`` (such as :class:`~pet_lightning.module.PETModule`).
    """

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        report = pl_module.freeze_to_strategy()
        if sum(p.numel() for p in pl_module.parameters() if p.requires_grad) == 0:
            raise RuntimeError(f"strategy {report.strategy!r} leaves no parameter trainable: nothing would train")
        self.log_report(pl_module, report)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """Nothing changes during training for a one-stage strategy."""

    @staticmethod
    def log_report(pl_module: L.LightningModule, report: Any, prefix: str = "strategy") -> None:
        counts = {f"{prefix}/{key}": value for key, value in report.as_dict().items()}
        strategy = getattr(pl_module, "strategy", None)
        if strategy is not None and hasattr(strategy, "config_dict"):
            # The settings too (LoRA's r, a peft config's class and arguments): counts alone tell runs apart badly.
            counts[f"{prefix}/settings"] = strategy.config_dict()
        rank_zero_info(
            f"[pet_lightning] {report.strategy}: {report.trainable:,} of {report.total:,} backbone parameters train "
            f"({report.percent:.4f}%), head {report.head:,}"
        )
        trainer = pl_module._trainer
        if trainer is None:
            return
        for logger in trainer.loggers:
            logger.log_hyperparams(counts)
