"""``ExactLinearProbe``: solve the linear head exactly at the start of training (linear probing, LP-FT stage 1).

Without this callback the head of a ``frozen`` run trains by SGD (AdamW, the module's learning rate): that path
stays the default. With it, at the start of training the head is replaced by the exact solution of
:mod:`pet_lightning.probes` (ridge for regression, L2 logistic regression by L-BFGS for classification), its
regularisation chosen on the selection split (the first validation dataloader). Then

* ``keep_solution=True`` (default): the head stays at the solution for the rest of the stage: its optimizer
  groups get learning rate 0 (AdamW then changes nothing, weight decay included). The stage's epochs only
  validate it, so a ``frozen`` run needs one epoch; with :class:`~pet_lightning.callbacks.TwoStageTraining` stage
  1 is the exact probe and stage 2 (its own optimizer) fine-tunes everything from it: LP-FT as its paper runs it.
* ``keep_solution=False``: SGD goes on from the solution at the module's learning rate.

>>> trainer = L.Trainer(max_epochs=1, callbacks=[ExactLinearProbe()])
>>> trainer.fit(PETModule(task="stsb", strategy="frozen"), datamodule=GlueDataModule(task="stsb"))

The encoder must be frozen when training starts (strategy ``frozen``); a non-linear head (``head="mlp"``, the
RoBERTa / ELECTRA / DistilBERT / DeBERTa heads) and multiple-choice tasks are refused with a one-line error. The
probe runs once per fit: a resumed run keeps the checkpoint's head. ``probe/strength`` and
``probe/selection_loss`` go to the loggers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from pet_lightning.data.contract import task_data
from pet_lightning.feature_cache import backbone_trains
from pet_lightning.probes import (
    DEFAULT_STRENGTHS,
    ProbeError,
    ProbeResult,
    head_inputs,
    linear_head,
    solve_logistic,
    solve_ridge,
    write_head,
)


class ExactLinearProbe(Callback):
    """Replace the SGD-trained linear head by the exact (ridge / logistic) solution at the start of training.

    Args:
        strengths: Regularisation strengths to try (ridge alpha; 1/C for logistic regression), ascending or not;
            default 13 values from 1e-2 to 1e4 (log-spaced). Features are standardised first.
        keep_solution: Keep the head at the solution for the rest of the stage (learning rate 0) rather than
            continuing SGD from it.
        max_iter: L-BFGS iterations per logistic fit.
    """

    def __init__(self, strengths: Sequence[float] | None = None, keep_solution: bool = True, max_iter: int = 2000):
        strengths = tuple(float(s) for s in (strengths if strengths is not None else DEFAULT_STRENGTHS))
        if not strengths or any(not s > 0 for s in strengths):
            raise ProbeError(f"strengths={list(strengths)}: give one or more positive values, e.g. [0.1, 1, 10]")
        self.strengths = tuple(sorted(strengths))
        self.keep_solution = keep_solution
        self.max_iter = max_iter
        self.solved = False
        self.result: ProbeResult | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if pl_module.hparams.get("head", "hf") != "hf":
            raise ProbeError(
                f"ExactLinearProbe solves a linear head; head={pl_module.hparams.get('head')!r} is not linear: use "
                "head='hf', or drop ExactLinearProbe to train that head by SGD"
            )
        if pl_module.spec.kind == "multiple_choice":
            raise ProbeError(
                f"ExactLinearProbe solves classification and regression heads; {pl_module.spec.name} scores each "
                "choice: drop ExactLinearProbe to train its head by SGD"
            )
        linear_head(pl_module.model)  # refuses heads that are not one linear layer

    def _solve(self, pl_module: L.LightningModule, train, selection) -> tuple[Any, Any, Any, int]:
        train_xy = head_inputs(pl_module, train, "train")
        selection_xy = head_inputs(pl_module, selection, "val/0")
        if pl_module.spec.kind == "regression":
            weight, bias, result = solve_ridge(train_xy, selection_xy, self.strengths)
        else:
            weight, bias, result = solve_logistic(
                train_xy, selection_xy, pl_module.spec.num_labels, self.strengths, self.max_iter
            )
        return weight, bias, result, len(train_xy[1])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.solved:  # resumed: the checkpoint holds the head (and the optimizer its learning rates)
            return
        if backbone_trains(pl_module.model):
            raise ProbeError(
                f"ExactLinearProbe needs a frozen encoder when training starts, but strategy "
                f"{pl_module.strategy.name!r} trains it: use strategy 'frozen' (linear probing, LP-FT stage 1)"
            )
        # Rank 0 solves and sends its head to the others: ranks solving alone could end a last bit apart (GPU
        # features), and nothing would sync them again (DDP syncs gradients only); the others skip the encoding.
        train, selection = self._loaders(trainer)  # on every rank: a missing split fails everywhere, not on rank 0
        solution = self._solve(pl_module, train, selection) if trainer.is_global_zero else None
        weight, bias, result, n_train = trainer.strategy.broadcast(solution, src=0)
        write_head(linear_head(pl_module.model), weight, bias)
        self.result, self.solved = result, True
        if result.absent_classes:
            rank_zero_warn(
                f"ExactLinearProbe: no training example of class {list(result.absent_classes)}: the probe never "
                "predicts it (a larger train_subset would hold it)"
            )
        if self.keep_solution:
            self._hold_head(trainer, pl_module)
        rank_zero_info(
            f"[pet_lightning] exact {result.kind} probe: strength {result.strength:g} "
            f"(selection loss {result.selection_loss:.4f}, {n_train} training examples)"
        )
        for logger in trainer.loggers:
            logger.log_metrics(
                {"probe/strength": result.strength, "probe/selection_loss": result.selection_loss},
                step=trainer.global_step,
            )

    @staticmethod
    def _loaders(trainer: L.Trainer) -> tuple[DataLoader, DataLoader]:
        """In-order loaders over the whole training and selection splits (every process sees all examples, so
        all find the same solution; the fit's shuffled loader and its random state are left alone)."""
        data = task_data(trainer)
        try:
            # Item access, not `in` / get(): the datamodule encodes a split the first time it is read.
            train, selections = (data.datasets["train"], data.datasets["val"]) if data else (None, None)
        except (AttributeError, KeyError, TypeError):  # not set up
            train, selections = None, None
        if train is None or not selections:
            raise ProbeError(
                "ExactLinearProbe needs a pet_lightning datamodule with train and validation splits "
                "(GlueDataModule / SuperGlueDataModule) passed as trainer.fit(..., datamodule=...)"
            )

        def loader(dataset) -> DataLoader:
            return DataLoader(dataset, batch_size=data.eval_batch_size, shuffle=False,
                              collate_fn=data.collate, generator=torch.Generator().manual_seed(0))

        return loader(train), loader(next(iter(selections.values())))

    @staticmethod
    def _hold_head(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Learning rate 0 for every optimizer group holding a head tensor, schedules included."""
        head = {id(p) for name, p in pl_module.model.named_parameters() if name in set(pl_module.report.head_names)}
        for optimizer in trainer.optimizers:
            held = [i for i, group in enumerate(optimizer.param_groups) if any(id(p) in head for p in group["params"])]
            for i in held:
                optimizer.param_groups[i]["lr"] = 0.0
                optimizer.param_groups[i]["initial_lr"] = 0.0
            for config in trainer.lr_scheduler_configs:
                if config.scheduler.optimizer is optimizer:
                    for i in held:
                        config.scheduler.base_lrs[i] = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"solved": self.solved}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.solved = bool(state_dict.get("solved", False))


__all__ = ["ExactLinearProbe"]
