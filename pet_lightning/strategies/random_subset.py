"""Random subset: individual scalar parameters, drawn uniformly from the encoder layers, train (the Random row).

By default the draw skips the embeddings and the pooler: about half of MiniLM's scalars are word embeddings, and
most of their rows never see a token of a task's data, so a draw there would count parameters that never train.
``include_embeddings`` draws from the whole backbone.

The choice uses torch's global random generator at ``apply`` time and is kept as the report's masks;
``PETModule`` seeds it with ``init_seed``, so the same seed picks the same elements (and a checkpoint can be checked
against the rebuilt mask).
Tensors that hold a chosen element require grad; a gradient hook zeroes the gradient of every other element
and ``PETModule`` gives these tensors no weight decay, so under AdamW the unchosen elements stay bitwise equal
to the pretrained values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from pet_lightning.strategies.base import Strategy, StrategyError, backbone_of, register_strategy, unwrap
from pet_lightning.strategies.layernorm import LayerNormTuning
from pet_lightning.strategies.roles import check_layers, find_roles, parameter_names


@register_strategy("random", "random_subset")
@dataclass(frozen=True)
class RandomSubset(Strategy):
    """A uniform random subset of the backbone's scalar parameters trains.

    Args:
        count: How many scalars. Give ``count`` or ``fraction``, not both. Neither: as many as strategy
            ``layernorm`` (with the same ``layers``) trains on this model, the study's Random baseline.
        fraction: Fraction of the pool's scalars, in (0, 1].
        layers: Draw only from these transformer layers (0-based, negative counts from the top). None draws
            from every transformer layer.
        include_embeddings: With ``layers`` None, draw from the whole backbone: embeddings and pooler too.
    """

    count: int | None = field(default=None, metadata={"help": "number of scalars to tune"})
    fraction: float | None = field(default=None, metadata={"help": "fraction of the pool's scalars to tune"})
    layers: list[int] | None = field(default=None, metadata={"help": "transformer layers to draw from; None = all"})
    include_embeddings: bool = field(
        default=False, metadata={"help": "also draw from the embeddings and the pooler (layers must be None)"}
    )

    def __post_init__(self) -> None:
        if self.count is not None and self.fraction is not None:
            raise StrategyError(f"strategy {self.name!r}: give count or fraction, not both")
        if self.count is not None and (isinstance(self.count, bool) or not isinstance(self.count, int)
                                       or self.count < 1):
            raise StrategyError(f"strategy {self.name!r}: count={self.count!r} must be a positive integer")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise StrategyError(f"strategy {self.name!r}: fraction={self.fraction!r} must be in (0, 1]")
        object.__setattr__(self, "layers", check_layers(self.layers, self.name))
        if self.include_embeddings and self.layers is not None:
            raise StrategyError(
                f"strategy {self.name!r}: include_embeddings draws from the whole backbone: drop layers, or set "
                "include_embeddings: false"
            )

    def choose(self, model: nn.Module) -> tuple[list[str], dict[str, torch.Tensor]]:
        # One draw gives both the tensors that train and their masks; the report keeps it (its masks).
        drawn = self.draw(model)
        return list(drawn), drawn

    def select(self, model: nn.Module) -> Iterable[str]:
        """The tensors holding a chosen element, in a fresh draw."""
        return list(self.draw(model))

    def draw(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Draw the subset from torch's global generator: name -> element mask of each tensor holding a chosen
        element."""
        hf = unwrap(model)
        pool = self._pool(hf)
        parameters = dict(hf.named_parameters())
        sizes = [parameters[name].numel() for name in pool]
        available = sum(sizes)
        wanted = self._wanted(hf, available)
        if wanted > available:
            raise StrategyError(
                f"strategy {self.name!r}: count={wanted} exceeds the {available} parameters to draw from in "
                f"{type(hf).__name__}: lower count"
            )
        flat = torch.zeros(available, dtype=torch.bool)
        flat[_draw(available, wanted)] = True
        drawn = {}
        for name, chunk in zip(pool, flat.split(sizes)):
            if chunk.any():
                # A copy: a view would keep (and pickle) the whole flat mask alive.
                drawn[name] = chunk.view_as(parameters[name]).clone()
        return drawn

    def _pool(self, hf: nn.Module) -> list[str]:
        if self.include_embeddings:
            prefix = hf.base_model_prefix
            return [f"{prefix}.{name}" for name, _ in backbone_of(hf).named_parameters()]
        chosen = find_roles(hf).pick(self.layers, self.name)
        return parameter_names(hf, [layer.prefix for layer in chosen])

    def _wanted(self, hf: nn.Module, available: int) -> int:
        if self.count is not None:
            return self.count
        if self.fraction is not None:
            return max(1, round(self.fraction * available))
        parameters = dict(hf.named_parameters())
        return sum(parameters[name].numel() for name in LayerNormTuning(layers=self.layers).select(hf))


def _draw(population: int, count: int) -> torch.Tensor:
    """``count`` distinct indices below ``population``, uniformly, without a ``randperm`` of the whole range.

    The distinct values of a with-replacement sample form a uniform random subset given their number, and a
    uniform sub-subset of that is again uniform; this keeps memory at O(count) for 100M-parameter models.
    """
    if count * 4 >= population:
        return torch.randperm(population)[:count]
    draws = count + count // 8 + 64
    while True:
        distinct = torch.randint(population, (draws,)).unique()
        if distinct.numel() >= count:
            return distinct[torch.randperm(distinct.numel())[:count]]
        draws *= 2
