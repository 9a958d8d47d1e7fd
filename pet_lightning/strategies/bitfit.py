"""BitFit: only the bias terms of the backbone train (Ben Zaken et al., 2022), LayerNorm biases included."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import nn

from pet_lightning.strategies.base import Strategy, backbone_of, register_strategy, unwrap
from pet_lightning.strategies.roles import check_layers, find_roles, parameter_names


@register_strategy("bitfit", "bias")
@dataclass(frozen=True)
class BitFit(Strategy):
    """Every bias of the backbone trains (attention, feed-forward, LayerNorm, embedding LayerNorm, pooler).

    Args:
        layers: Restrict to the biases of these transformer layers (0-based; negative counts from the top).
            None trains every bias of the backbone, including those outside the layers.
    """

    layers: list[int] | None = field(default=None, metadata={"help": "transformer layers to tune; None = all"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", check_layers(self.layers, self.name))

    def select(self, model: nn.Module) -> Iterable[str]:
        hf = unwrap(model)
        if self.layers is None:
            in_backbone = {id(p) for p in backbone_of(hf).parameters()}
            return [
                name for name, p in hf.named_parameters() if name.rsplit(".", 1)[-1] == "bias" and id(p) in in_backbone
            ]
        chosen = find_roles(hf).pick(self.layers, self.name)
        return parameter_names(hf, [layer.prefix for layer in chosen], only="bias")
