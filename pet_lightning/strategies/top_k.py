"""Top-K layers: the K transformer layers closest to the head train (a baseline of the EH-FT study)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import nn

from pet_lightning.strategies.base import Strategy, StrategyError, register_strategy, unwrap
from pet_lightning.strategies.roles import find_roles, parameter_names


@register_strategy("top_k_layers", "top_k", "topk")
@dataclass(frozen=True)
class TopKLayers(Strategy):
    """Every parameter of the top ``k`` transformer layers trains; embeddings, lower layers and anything else
    of the backbone outside the layer stack (e.g. BERT's pooler) stay frozen.

    Args:
        k: How many layers, counted from the top; at most the model's number of layers.
    """

    k: int = field(default=1, metadata={"help": "number of top transformer layers to tune"})

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise StrategyError(f"strategy {self.name!r}: k={self.k!r} must be a positive number of layers")

    def select(self, model: nn.Module) -> Iterable[str]:
        hf = unwrap(model)
        roles = find_roles(hf)
        if self.k > len(roles.layers):
            raise StrategyError(
                f"strategy {self.name!r}: k={self.k} exceeds the {len(roles.layers)} layers of {roles.model_class}: "
                f"use k <= {len(roles.layers)} (or strategy 'full')"
            )
        return parameter_names(hf, [layer.prefix for layer in roles.layers[-self.k:]])
