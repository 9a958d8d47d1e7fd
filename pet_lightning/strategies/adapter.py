"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021) as a registered strategy.

peft has no bottleneck adapter and the ``adapters`` package does not import on transformers 5, so this is ours.
An adapter is ``h + up(act(down(h)))`` with ``down: d -> d / reduction_factor`` and ``up`` back to ``d``, both
with biases. It is inserted right after a sub-layer's output projection, before the dropout, residual and
LayerNorm of the pretrained layer:

* ``style: pfeiffer`` - one adapter per layer, after the feed-forward output projection;
* ``style: houlsby`` - two per layer, after the attention output projection and after the feed-forward one.

With ``placement: normalised`` (``pfeiffer`` only) the adapter sits where adapter-transformers 2.x's Pfeiffer
config puts it (``original_ln_before``, ``residual_before_ln``, ``original_ln_after``; the Revisiting study's
adapter): it reads the layer's normalised output ``LN(h + x)`` (``h`` the FFN output after its dropout, ``x`` the
layer's input), its output is added to ``h``, and the layer's LayerNorm is applied again: ``LN(h + a(LN(h + x)) +
x)``. The parameter count is the same either way: 74,544 per layer on bert-base at reduction 16. Both projections
start small (``N(0, init_std)``, zero biases), so the adapted model starts as a near-identity of the pretrained one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from pet_lightning.strategies.base import (
    Strategy,
    StrategyError,
    StrategyReport,
    register_strategy,
    report_injected,
    unwrap,
)

# Per model type: regexes (relative to the encoder) of the attention and feed-forward output projections.
ADAPTER_SITES: dict[str, dict[str, str]] = {
    "bert": {"attention": r"layer\.\d+\.attention\.output\.dense", "ffn": r"layer\.\d+\.output\.dense"},
    "roberta": {"attention": r"layer\.\d+\.attention\.output\.dense", "ffn": r"layer\.\d+\.output\.dense"},
    "xlm-roberta": {"attention": r"layer\.\d+\.attention\.output\.dense", "ffn": r"layer\.\d+\.output\.dense"},
    "electra": {"attention": r"layer\.\d+\.attention\.output\.dense", "ffn": r"layer\.\d+\.output\.dense"},
    "deberta-v2": {"attention": r"layer\.\d+\.attention\.output\.dense", "ffn": r"layer\.\d+\.output\.dense"},
    "distilbert": {"attention": r"layer\.\d+\.attention\.out_lin", "ffn": r"layer\.\d+\.ffn\.lin2"},
}
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class Bottleneck(nn.Module):
    """``h + up(act(down(h)))``: the adapter module itself."""

    def __init__(self, size: int, bottleneck: int, activation: str, init_std: float):
        super().__init__()
        self.down = nn.Linear(size, bottleneck)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, size)
        for layer in (self.down, self.up):
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.act(self.down(hidden)))


class AdaptedLinear(nn.Module):
    """A pretrained projection followed by an adapter; removing the adapter's report puts ``base`` back."""

    def __init__(self, base: nn.Linear, adapter: Bottleneck):
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.base(hidden))


class AdaptedOutput(nn.Module):
    """A layer's output block (``dense -> dropout``, residual, ``LayerNorm``) with a Pfeiffer adapter reading its
    normalised output; removing the adapter's report puts ``base`` back."""

    def __init__(self, base: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        norm = self.base.LayerNorm
        hidden = self.base.dropout(self.base.dense(hidden_states))
        delta = self.adapter.up(self.adapter.act(self.adapter.down(norm(hidden + input_tensor))))
        return norm(hidden + delta + input_tensor)


PLACEMENTS = ("projection", "normalised")


@register_strategy("adapter", "adapters", "bottleneck_adapter")
@dataclass(frozen=True)
class BottleneckAdapter(Strategy):
    """Bottleneck adapters after the output projections of every layer; the backbone stays frozen.

    Args:
        style: ``pfeiffer`` (after the feed-forward output only) or ``houlsby`` (after attention and feed-forward).
        reduction_factor: Hidden size divided by the bottleneck size (16 on bert-base gives 48 units).
        activation: Non-linearity in the bottleneck: relu, gelu, swish/silu or tanh.
        init_std: Standard deviation of the initial projection weights (biases start at zero); small values
            keep the model near the pretrained one at the start.
        placement: ``projection``: right after the output projection, reading its raw output; ``normalised``
            (``pfeiffer`` only): reading the layer's normalised output, adapter-transformers' Pfeiffer placement.
    """

    style: str = field(default="pfeiffer", metadata={"help": "pfeiffer (after the FFN) | houlsby (attention and FFN)"})
    reduction_factor: float = field(default=16, metadata={"help": "hidden size divided by the bottleneck size"})
    activation: str = field(default="relu", metadata={"help": "relu | gelu | swish | silu | tanh"})
    init_std: float = field(default=1e-2, metadata={"help": "standard deviation of the initial projection weights"})
    placement: str = field(default="projection", metadata={"help": "projection | normalised (pfeiffer only)"})

    styles: ClassVar[dict[str, tuple[str, ...]]] = {"pfeiffer": ("ffn",), "houlsby": ("attention", "ffn")}

    def __post_init__(self) -> None:
        if self.style not in self.styles:
            raise StrategyError(f"adapter style {self.style!r} is unknown: use pfeiffer or houlsby")
        if self.reduction_factor <= 0:
            raise StrategyError(f"adapter reduction_factor={self.reduction_factor}: use a positive factor, e.g. 16")
        if self.activation not in ACTIVATIONS:
            raise StrategyError(f"adapter activation {self.activation!r} is unknown: use one of {sorted(ACTIVATIONS)}")
        if self.init_std < 0:
            raise StrategyError(f"adapter init_std={self.init_std}: use a non-negative standard deviation")
        if self.placement not in PLACEMENTS or (self.placement == "normalised" and self.style != "pfeiffer"):
            raise StrategyError(f"adapter placement={self.placement!r} with style {self.style!r}: use projection, or "
                                "normalised with style pfeiffer")

    def sites(self, hf: nn.Module) -> list[str]:
        """Names (relative to the encoder) of the projections that get an adapter."""
        kind = getattr(hf.config, "model_type", type(hf).__name__)
        if kind not in ADAPTER_SITES:
            raise StrategyError(
                f"adapter does not know where to insert into model type {kind!r}: supported are "
                f"{', '.join(sorted(ADAPTER_SITES))}"
            )
        patterns = [re.compile(rf"(.*\.)?{ADAPTER_SITES[kind][site]}") for site in self.styles[self.style]]
        return [
            name
            for name, module in hf.base_model.named_modules()
            if isinstance(module, nn.Linear) and any(p.fullmatch(name) for p in patterns)
        ]

    def prepare(self, model: nn.Module) -> nn.Module:
        hf = unwrap(model)
        if any(isinstance(m, (AdaptedLinear, AdaptedOutput)) for m in hf.modules()):
            raise StrategyError("adapter: the model already has adapters: call remove() on its report first")
        encoder = hf.base_model
        sites = self.sites(hf)
        if not sites:
            raise StrategyError(f"adapter found no output projection in {type(hf).__name__}: check the architecture")
        for name in sites:
            base = encoder.get_submodule(name)
            bottleneck = max(1, int(base.out_features // self.reduction_factor))
            adapter = Bottleneck(base.out_features, bottleneck, self.activation, self.init_std)
            adapter.to(device=base.weight.device, dtype=base.weight.dtype)
            if self.placement == "normalised":
                # Wrap the whole output block (dense, dropout, LayerNorm): the adapter reads its normalised output.
                name = name.rpartition(".")[0]
                block = encoder.get_submodule(name)
                if not all(hasattr(block, part) for part in ("dense", "dropout", "LayerNorm")):
                    raise StrategyError(f"adapter placement=normalised: {type(block).__name__} has no dense / dropout "
                                        "/ LayerNorm output block: use placement projection")
                wrapped: nn.Module = AdaptedOutput(block, adapter)
            else:
                wrapped = AdaptedLinear(base, adapter)
            parent = encoder.get_submodule(name.rpartition(".")[0]) if "." in name else encoder
            setattr(parent, name.rpartition(".")[2], wrapped)
        return model

    def apply(self, model: nn.Module) -> StrategyReport:
        return report_injected(self, self.prepare(model))

    def injected_parameters(self, model: nn.Module) -> set[str]:
        return {name for name, _ in model.named_parameters() if ".adapter." in name}

    def undo(self, applied: StrategyReport) -> nn.Module:
        hf = unwrap(applied.model)
        for name, module in list(hf.named_modules()):
            if isinstance(module, (AdaptedLinear, AdaptedOutput)):
                parent = hf.get_submodule(name.rpartition(".")[0]) if "." in name else hf
                setattr(parent, name.rpartition(".")[2], module.base)
        return hf
