"""Child-Tuning_D (Xu et al., 2021): only the parameters with the most Fisher information train.

Before training, the squared gradients of the loss are summed over the training data (the diagonal of the
empirical Fisher information). The top ``reserve_p`` fraction of the scalars of the encoder layers (one global
threshold over all of them) forms the "child network"; only their gradients flow, through element masks and
gradient hooks. Embeddings, pooler and head train fully, as in the method's code (it masks parameters whose name
contains ``layer``). Masked tensors get no weight decay, so their frozen elements stay pretrained.

The Fisher scores need data, so the strategy alone cannot pick its masks: they are an input of
``apply(model, fisher=...)``. :class:`~pet_lightning.callbacks.ChildTuningFisher` (a callback, which
``PETLightningCLI`` adds for this strategy) computes them from the train dataloader when fitting starts and
re-applies the strategy with them. A fit without them stops at its start with a one-line error.

>>> trainer = L.Trainer(callbacks=[ChildTuningFisher()])
>>> trainer.fit(PETModule(task="rte", strategy={"name": "child_tuning_d", "reserve_p": 0.1}), datamodule=dm)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pet_lightning.strategies.base import Strategy, StrategyError, StrategyReport, register_strategy, unwrap

SCOPES = ("encoder", "backbone")


@register_strategy("child_tuning_d", "child_tuning", "childtuning_d")
@dataclass(frozen=True)
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

    def masked_names(self, model: nn.Module) -> list[str]:
        """Names (in the Hugging Face model) of the tensors that get element masks."""
        hf = unwrap(model)
        selected = self.select(hf)
        if self.where == "backbone":
            return list(selected)
        layers = _encoder_layer_prefixes(hf)
        return [name for name in selected if any(name.startswith(prefix) for prefix in layers)]

    def gradient_masks(self, model: nn.Module, selected: list[str],
                       fisher: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """``fisher``: the scores of :meth:`masked_names` (name -> tensor). None while no data was seen (the
        module is being built): the masks come when ChildTuningFisher re-applies the strategy at fit start."""
        if fisher is None:
            return {}
        return top_fraction_masks(fisher, self.reserve_p)

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None,
                  applied: StrategyReport | None = None) -> None:
        if applied is None or applied.inputs.get("fisher") is None:
            raise StrategyError(
                "child_tuning_d has no Fisher scores, so no mask: add "
                "pet_lightning.callbacks.ChildTuningFisher to trainer.callbacks (the CLI adds it)"
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


__all__ = ["ChildTuningD", "top_fraction_masks"]
