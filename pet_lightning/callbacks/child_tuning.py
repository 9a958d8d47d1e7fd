"""Child-Tuning_D's Fisher information, estimated from the train data when fitting starts.

:class:`~pet_lightning.strategies.ChildTuningD` cannot pick its child network without data: this callback sums the
squared gradients of the loss over the train dataloader (:func:`fisher_scores`) and re-applies the strategy with
them (``apply(model, fisher=...)``). Under DDP the scores of all processes are summed, so every process picks the
same child network. ``PETLightningCLI`` adds it whenever the strategy is ``child_tuning_d``.
"""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from pet_lightning.strategies import ChildTuningD
from pet_lightning.strategies.base import unwrap


def fisher_scores(

    pl_module: L.LightningModule, batches: Iterable[dict[str, torch.Tensor]], names: list[str], limit: int | None,
    dropout: bool = False, max_grad_norm: float | None = None, seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Sum over batches of the squared gradient of the batch loss, for the named tensors of the HF model.

    By default dropout is off (eval mode), so the estimate depends on the data alone. ``dropout=True`` keeps the
    model in train mode, as the Child-Tuning code's ``calc_mask`` does, with masks drawn from ``seed`` on a forked
    random stream (a resumed run computes the same scores and training's stream is untouched).
    ``max_grad_norm`` clips each tensor's gradient to that norm before squaring (their ``clip_grad_norm_`` per
    tensor with ``--max-grad-norm 1.0``).
    """
    hf = unwrap(pl_module.model)
    parameters = dict(hf.named_parameters())
    tracked = {name: parameters[name] for name in names}
    flags = {name: p.requires_grad for name, p in hf.named_parameters()}
    scores = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in tracked.items()}
    was_training = pl_module.training
    pl_module.train(dropout)
    hf.requires_grad_(False)
    for p in tracked.values():
        p.requires_grad_(True)
        p.grad = None
    devices = [pl_module.device] if pl_module.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            _accumulate(pl_module, hf, batches, tracked, scores, limit, max_grad_norm)
    finally:
        for name, p in hf.named_parameters():
            p.requires_grad_(flags[name])
        pl_module.train(was_training)
    return scores


def _accumulate(pl_module: L.LightningModule, hf: nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                tracked: dict[str, nn.Parameter], scores: dict[str, torch.Tensor], limit: int | None,
                max_grad_norm: float | None) -> None:
    for index, batch in enumerate(batches):
        if limit is not None and index >= limit:
            break
        batch = move_data_to_device(batch, pl_module.device)
        with torch.enable_grad():
            inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch}
            loss = pl_module.loss(hf(**inputs).logits, batch["label"])
            loss.backward()
        for name, p in tracked.items():
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(p, max_grad_norm)
            scores[name] += p.grad.detach().float() ** 2
            p.grad = None


class ChildTuningFisher(L.Callback):
    """Estimate the Fisher information at fit start and apply Child-Tuning_D's masks with it.

    Runs in ``setup`` (before the optimizer is built, so masked tensors get no weight decay) on the train
    dataloader of the datamodule. A resumed run computes the same scores (same model, same data, dropout off or
    drawn from the module's ``init_seed``), and the module checks them against the checkpoint's masks.

    Args:
        dropout: Estimate with dropout on (the Child-Tuning code's ``calc_mask`` runs the model in train mode).
        max_grad_norm: Clip each tensor's gradient to this norm before squaring (their code: 1.0); None: no clip.
    """

    def __init__(self, dropout: bool = False, max_grad_norm: float | None = None):
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"ChildTuningFisher max_grad_norm={max_grad_norm}: use a positive norm (1.0) or None")
        self.dropout = dropout
        self.max_grad_norm = max_grad_norm

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        strategy = getattr(pl_module, "strategy", None)
        if not isinstance(strategy, ChildTuningD):
            raise ValueError(
                f"ChildTuningFisher needs a module with strategy child_tuning_d, not "
                f"{getattr(strategy, 'name', None)!r}: remove the callback or change model.strategy"
            )
        datamodule = trainer.datamodule
        if datamodule is None:
            raise ValueError("ChildTuningFisher needs the train data: pass a datamodule to trainer.fit")
        pl_module.to(trainer.strategy.root_device)
        names = strategy.masked_names(pl_module.model)
        seed = pl_module.hparams.get("init_seed") or 0
        scores = fisher_scores(pl_module, datamodule.train_dataloader(), names, strategy.fisher_batches,
                               dropout=self.dropout, max_grad_norm=self.max_grad_norm, seed=seed)
        if trainer.world_size > 1:
            # Each process saw its own shard: sum, so all of them pick one child network.
            scores = {name: trainer.strategy.reduce(score, reduce_op="sum") for name, score in scores.items()}
        report = pl_module.apply_strategy(strategy, fisher=scores)
        kept = sum(int(mask.sum()) for mask in report.masks.values())
        total = sum(mask.numel() for mask in report.masks.values())
        rank_zero_info(
            f"[pet_lightning] child_tuning_d: {kept:,} of {total:,} masked scalars train "
            f"({100 * kept / max(total, 1):.2f}%, reserve_p={strategy.reserve_p})"
        )


__all__ = ["ChildTuningFisher", "fisher_scores"]
