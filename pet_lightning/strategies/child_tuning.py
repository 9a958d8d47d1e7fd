"""Child-Tuning_D (Xu et al., 2021): only the parameters with the most Fisher information train.

Before training, the squared gradients of the loss are summed over the training data (the diagonal of the
empirical Fisher information). The top ``reserve_p`` fraction of the scalars of the encoder layers (one global
threshold over all of them) forms the "child network"; only their gradients flow, through element masks and
gradient hooks. Embeddings, pooler and head train fully, as in the method's code (it masks parameters whose name
contains ``layer``). Masked tensors get no weight decay, so their frozen elements stay pretrained.

The Fisher scores need data, so the strategy alone cannot pick its masks: :class:`ChildTuningFisher` (a callback)
computes them from the train dataloader when fitting starts and re-applies the strategy with them. Under DDP the
scores of all processes are summed, so every process picks the same child network. A fit without the callback
stops at its start with a one-line error.

>>> trainer = L.Trainer(callbacks=[ChildTuningFisher()])
>>> trainer.fit(PETModule(task="rte", strategy={"name": "child_tuning_d", "reserve_p": 0.1}), datamodule=dm)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from pet_lightning.strategies.base import Strategy, StrategyError, register_strategy, unwrap

SCOPES = ("encoder", "backbone")


@register_strategy("child_tuning_d", "child_tuning", "childtuning_d")
@dataclass
class ChildTuningD(Strategy):
    """Train the top ``reserve_p`` of the encoder's scalars by Fisher information (plus embeddings, pooler, head).

    Args:
        reserve_p: Fraction of the masked scalars that train (0.1 in the EH-FT study's runs).
        where: ``encoder``: mask the transformer layers and train the rest of the backbone fully (the method's
            code); ``backbone``: mask every backbone tensor.
        fisher_batches: Estimate the Fisher information on this many training batches; None uses them all.
    """

    reserve_p: float = field(default=0.1, metadata={"help": "fraction of the masked parameters that train"})
    where: str = field(default="encoder", metadata={"help": "encoder (transformer layers) or backbone"})
    fisher_batches: int | None = field(default=None, metadata={"help": "batches for the Fisher estimate; None = all"})

    def __post_init__(self) -> None:
        if not 0 < self.reserve_p <= 1:
            raise StrategyError(f"child_tuning_d reserve_p={self.reserve_p}: use a fraction in (0, 1], e.g. 0.1")
        if self.where not in SCOPES:
            raise StrategyError(f"child_tuning_d where={self.where!r}: choose one of {', '.join(SCOPES)}")
        if self.fisher_batches is not None and self.fisher_batches < 1:
            raise StrategyError(f"child_tuning_d fisher_batches={self.fisher_batches}: use a positive count or None")
        self.fisher: dict[str, torch.Tensor] | None = None

    def masked_names(self, model: nn.Module) -> list[str]:
        """Names (in the Hugging Face model) of the tensors that get element masks."""
        hf = unwrap(model)
        selected = self.select(hf)
        if self.where == "backbone":
            return list(selected)
        layers = _encoder_layer_prefixes(hf)
        return [name for name in selected if any(name.startswith(prefix) for prefix in layers)]

    def gradient_masks(self, model: nn.Module, selected: list[str]) -> dict[str, torch.Tensor]:
        if self.fisher is None:
            # No data seen yet (the module is being built): ChildTuningFisher applies the masks at fit start.
            return {}
        return top_fraction_masks(self.fisher, self.reserve_p)

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None) -> None:
        if self.fisher is None:
            raise StrategyError(
                "child_tuning_d has no Fisher scores, so no mask: add "
                "pet_lightning.strategies.child_tuning.ChildTuningFisher to trainer.callbacks"
            )


def top_fraction_masks(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Masks selecting the ``fraction`` of all scalars with the highest scores (one threshold across tensors)."""
    flat = torch.cat([score.detach().float().flatten().cpu() for score in scores.values()])
    keep = max(1, round(fraction * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.topk(flat, keep, sorted=False).indices] = True
    masks, start = {}, 0
    for name, score in scores.items():
        masks[name] = chosen[start : start + score.numel()].view(score.shape)
        start += score.numel()
    return masks


def _encoder_layer_prefixes(hf: nn.Module) -> list[str]:
    """``bert.encoder.layer.0.``... : the children of the backbone's first ModuleList of transformer layers."""
    for name, module in hf.named_modules():
        if isinstance(module, nn.ModuleList) and name.startswith(hf.base_model_prefix + "."):
            return [f"{name}.{index}." for index in range(len(module))]
    raise StrategyError(
        f"child_tuning_d found no list of transformer layers in {type(hf).__name__}: use where: backbone"
    )


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
        strategy.fisher = scores
        report = pl_module.apply_strategy(strategy)
        kept = sum(int(mask.sum()) for mask in report.masks.values())
        total = sum(mask.numel() for mask in report.masks.values())
        rank_zero_info(
            f"[pet_lightning] child_tuning_d: {kept:,} of {total:,} masked scalars train "
            f"({100 * kept / max(total, 1):.2f}%, reserve_p={strategy.reserve_p})"
        )


__all__ = ["ChildTuningD", "ChildTuningFisher", "fisher_scores", "top_fraction_masks"]
