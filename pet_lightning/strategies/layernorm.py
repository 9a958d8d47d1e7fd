"""LayerNorm tuning: only the LayerNorm gains and biases train (the transferability study's LayerNorms rows)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import nn

from pet_lightning.strategies.base import Strategy, StrategyError, register_strategy, unwrap
from pet_lightning.strategies.roles import check_layers, find_roles, parameter_names

WHERE = ("all", "attention", "ffn")


@register_strategy("layernorm", "ln", "ln_tuning", "layer_norm")
@dataclass(frozen=True)
class LayerNormTuning(Strategy):
    """LayerNorm weights and biases of the transformer layers train.

    Args:
        where: ``all`` (LayerNorms), ``attention`` (the LayerNorm after self-attention, LayerNorms_A) or
            ``ffn`` (the LayerNorm after the feed-forward block, LayerNorms_F).
        layers: Restrict to these transformer layers (0-based, negative counts from the top; the study's
            per-layer Table 3 tunes one layer at a time). None = every layer.
        include_embeddings: Also tune the LayerNorms outside the layers (the embedding LayerNorm, DeBERTa-v2's
            relative-position LayerNorm). Off by default, as in the study's parameter counts.
    """

    where: str = field(default="all", metadata={"help": "all | attention | ffn"})
    layers: list[int] | None = field(default=None, metadata={"help": "transformer layers to tune; None = all"})
    include_embeddings: bool = field(default=False, metadata={"help": "also tune LayerNorms outside the layers"})

    def __post_init__(self) -> None:
        if self.where not in WHERE:
            raise StrategyError(f"strategy {self.name!r}: where={self.where!r} is not one of {', '.join(WHERE)}")
        object.__setattr__(self, "layers", check_layers(self.layers, self.name))

    def select(self, model: nn.Module) -> Iterable[str]:
        hf = unwrap(model)
        roles = find_roles(hf)
        modules: list[str] = []
        for layer in roles.pick(self.layers, self.name):
            if self.where in ("all", "attention"):
                modules.extend(layer.attention_norms)
            if self.where in ("all", "ffn"):
                modules.extend(layer.ffn_norms)
        if self.include_embeddings:
            modules.extend(roles.outer_norms)
        return parameter_names(hf, modules)
