"""Mixout (Lee et al., 2020): dropout toward the pretrained weights instead of toward zero.

During training every linear layer of the backbone uses, in place of its weight ``w``,

    ((1 - M) * u + M * w - p * u) / (1 - p),   M ~ Bernoulli(1 - p) per element,

where ``u`` is the pretrained weight: each element is swapped for its pretrained value with probability ``p``,
and the rest are rescaled so the expectation stays ``w``. Dropout inside the backbone is switched off, as mixout
takes its place; the task head (no pretrained value) keeps its dropout, unless ``include_head``: then the head's
linear layers mix toward their initial values and its dropout is off too, as the EH-FT study's code does
(``replace_layer_for_mixout`` over the whole model, ``SAT/training/deepspeed_training.py:60-73, 147``). Every
parameter trains (this is a regulariser of full fine-tuning). In evaluation the layers use ``w`` as is.

The layers keep their parameter names (the forward is patched, the pretrained copy is a non-persistent buffer),
so checkpoints are those of full fine-tuning.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pet_lightning.strategies.base import (
    Strategy,
    StrategyError,
    StrategyReport,
    backbone_of,
    register_strategy,
    unwrap,
)

TARGET = "mixout_target"


def mix(weight: torch.Tensor, target: torch.Tensor, p: float) -> torch.Tensor:
    """One mixout draw of ``weight`` toward ``target`` (p = probability of taking the target's element)."""
    # Mixing with p = 0 is the identity; drawing an all-ones mask would still move the random stream.
    keep = torch.ones_like(weight) if p == 0 else torch.empty_like(weight).bernoulli_(1 - p)
    return ((1 - keep) * target + keep * weight - p * target) / (1 - p)


def _mixout_forward(self: nn.Linear, input: torch.Tensor) -> torch.Tensor:
    weight = self.weight
    if self.training:
        weight = mix(weight, getattr(self, TARGET).to(weight.dtype), self.mixout_p)
    return F.linear(input, weight, self.bias)


@register_strategy("mixout")
@dataclass(frozen=True)
class Mixout(Strategy):
    """Full fine-tuning with mixout(pretrained, p) on every linear layer of the backbone and its dropout off.

    Args:
        p: Probability that an element of a weight is replaced by its pretrained value at a training step. The
            EH-FT study's code parses ``--mix-p 0.9`` but runs the hard-coded 0.7. 0 gives plain training with the
            backbone's dropout off.
        include_head: Also mix the head's linear layers toward their initial values and switch its dropout off
            (the study's code); off keeps the head a plain, dropout-regularised layer.
    """

    p: float = field(default=0.9, metadata={"help": "probability of mixing an element toward its pretrained value"})
    include_head: bool = field(default=False, metadata={"help": "mix the head toward its initial values too"})

    def __post_init__(self) -> None:
        if not 0 <= self.p < 1:
            raise StrategyError(f"mixout p={self.p}: use a probability in [0, 1), e.g. 0.9")

    def apply(self, model: nn.Module) -> StrategyReport:
        hf = unwrap(model)
        if any(hasattr(module, TARGET) for module in hf.modules()):
            raise StrategyError("mixout is already applied to this model: call remove() on its report first")
        # The dropout that mixout replaces: the report keeps it, and puts it back on remove().
        dropout_p = {name: module.p for name, module in self._scope(hf) if isinstance(module, nn.Dropout)}
        report = super().apply(model)
        report.state["dropout_p"] = dropout_p
        return report

    def prepare(self, model: nn.Module) -> nn.Module:
        for _, module in self._scope(unwrap(model)):
            if isinstance(module, nn.Linear):
                # The value at application time is the pretrained one (strategies are applied before training).
                module.register_buffer(TARGET, module.weight.detach().clone(), persistent=False)
                module.mixout_p = self.p
                module.forward = types.MethodType(_mixout_forward, module)
            elif isinstance(module, nn.Dropout):
                module.p = 0.0
        return model

    def undo(self, applied: StrategyReport) -> nn.Module:
        hf = unwrap(applied.model)
        dropout_p = applied.state.get("dropout_p", {})
        for name, module in self._scope(hf):
            if hasattr(module, TARGET):
                delattr(module, TARGET)
                del module.mixout_p
                del module.forward
            elif name in dropout_p:
                module.p = dropout_p[name]
        return hf

    def _scope(self, hf: nn.Module) -> list[tuple[str, nn.Module]]:
        """(name in ``hf``, module) of the backbone's modules, plus the head's with ``include_head``."""
        backbone = backbone_of(hf)
        inside = {id(module) for module in backbone.modules()}
        return [(name, module) for name, module in hf.named_modules()
                if id(module) in inside or (self.include_head and module is not hf)]


__all__ = ["Mixout", "mix"]
