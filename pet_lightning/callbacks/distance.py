"""How far a run moved the backbone from its pretrained weights: L2 norm of the change, total and per layer.

The EH-FT study argues that a head fitted before fine-tuning lets the backbone end nearer its pretrained point.
:class:`PretrainedDistance` measures that at the end of training, against the backbone loaded again from its
source (so a two-stage run is measured from the pretrained backbone, not from its stage-1 state), and logs

* ``distance/total``: ``sqrt(sum over backbone tensors of ||w - w_pretrained||^2)``,
* ``distance/layer_<i>``: the same over the tensors of encoder layer ``i`` (numbered from 0 as the model names
  them: ``encoder.layer.<i>`` / DistilBERT's ``transformer.layer.<i>``),
* ``distance/rest``: embeddings, pooler and anything else outside the layers (so ``total^2`` is the sum of the
  squares of the others),

and ``distance_l2`` on the ``SUMMARY`` line. Only the pretrained tensors count: modules a method injects (LoRA
factors, adapters, prefixes) are not part of the pretrained weights. A LoRA / IA3 update (peft tuner layers) is
measured on a merged copy, so it counts as the weight change it makes. The head is not part of the backbone.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from pet_lightning.strategies.base import backbone_of, unwrap

LAYER_NAME = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


@dataclass
class Distance:
    """L2 distance from the pretrained backbone: total, per encoder layer, and the rest."""

    total: float
    layers: dict[int, float] = field(default_factory=dict)
    rest: float = 0.0

    def metrics(self, prefix: str = "distance/") -> dict[str, float]:
        values = {f"{prefix}total": self.total, f"{prefix}rest": self.rest}
        values.update({f"{prefix}layer_{i}": value for i, value in sorted(self.layers.items())})
        return values


def effective_backbone(model: nn.Module) -> nn.Module:
    """The encoder as the run leaves it, with a peft tuner's update merged into its weights (on a copy)."""
    merge = getattr(getattr(model, "base_model", None), "merge_and_unload", None)
    if unwrap(model) is not model and callable(merge):
        return backbone_of(copy.deepcopy(model).merge_and_unload())
    return backbone_of(model)


def backbone_distance(trained: nn.Module, pretrained: nn.Module) -> Distance:
    """:class:`Distance` of ``trained``'s encoder from ``pretrained``'s (both task models or wrappers)."""
    reference = dict(backbone_of(pretrained).named_parameters())
    squares: dict[int | None, float] = {}
    compared = 0
    for name, param in effective_backbone(trained).named_parameters():
        if name not in reference:  # injected by the method (adapters, prefixes): not a pretrained tensor
            continue
        compared += 1
        change = param.detach().to("cpu", torch.float64) - reference[name].detach().to("cpu", torch.float64)
        match = LAYER_NAME.search(name)
        key = int(match.group(1)) if match else None
        squares[key] = squares.get(key, 0.0) + float(change.pow(2).sum())
    if compared == 0:
        raise ValueError(
            f"no tensor of {type(unwrap(trained)).__name__}'s encoder is named as in the pretrained one: compare "
            "models of the same backbone"
        )
    layers = {key: math.sqrt(value) for key, value in squares.items() if key is not None}
    return Distance(math.sqrt(sum(squares.values())), layers, math.sqrt(squares.get(None, 0.0)))


class PretrainedDistance(Callback):
    """Log the backbone's L2 distance from its pretrained weights when training ends (``distance/*``).

    The pretrained weights are loaded again from the module's source (``PETModule.pretrained_model``), which costs
    one model load per fit.
    """

    def __init__(self) -> None:
        self.distance: Distance | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.distance = backbone_distance(pl_module.model, pl_module.pretrained_model())
        for logger in trainer.loggers:
            logger.log_metrics(self.distance.metrics(), step=trainer.global_step)


def measured_distance(trainer: L.Trainer) -> float | None:
    """The total distance the trainer's :class:`PretrainedDistance` measured in this fit, if it has one."""
    for callback in trainer.callbacks:
        if isinstance(callback, PretrainedDistance) and callback.distance is not None:
            return callback.distance.total
    return None


__all__ = ["Distance", "PretrainedDistance", "backbone_distance", "effective_backbone", "measured_distance"]
