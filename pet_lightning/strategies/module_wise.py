"""Module-wise tuning: only the feed-forward blocks or only the self-attention maps train.

The transferability study's Feed-Forward and Multi-Head rows. LayerNorms stay frozen in both (they have
their own strategy, ``layernorm``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from torch import nn

from pet_lightning.strategies.base import Strategy, register_strategy, unwrap
from pet_lightning.strategies.roles import check_layers, find_roles, parameter_names


@dataclass(frozen=True)
class _LayerRoleTuning(Strategy):
    """Shared body of the module-wise strategies: the modules of one role (``role``) in the chosen layers train.

    Args:
        layers: Restrict to these transformer layers (0-based, negative counts from the top). None = all.
    """

    role: ClassVar[str] = ""
    layers: list[int] | None = field(default=None, metadata={"help": "transformer layers to tune; None = all"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", check_layers(self.layers, self.name))

    def select(self, model: nn.Module) -> Iterable[str]:
        hf = unwrap(model)
        chosen = find_roles(hf).pick(self.layers, self.name)
        return parameter_names(hf, [m for layer in chosen for m in getattr(layer, self.role)])


@register_strategy("ffn", "feed_forward", "feedforward")
@dataclass(frozen=True)
class FeedForwardTuning(_LayerRoleTuning):
    """The feed-forward block of each layer trains: up- and down-projection, weights and biases."""

    role: ClassVar[str] = "ffn"


@register_strategy("attention", "mha", "multi_head", "multihead")
@dataclass(frozen=True)
class AttentionTuning(_LayerRoleTuning):
    """The self-attention linear maps of each layer train: query, key, value and output (and DeBERTa-v2's
    position projections), weights and biases."""

    role: ClassVar[str] = "attention"
