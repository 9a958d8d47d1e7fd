"""Checks of a PETModule's numbers and of its pairing with the data, each a one-line error naming the fix.

Apart from :mod:`pet_lightning.module` so that a sweep validates every run's model settings at plan time (before
Ray starts) with the same lines a fit gives.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def check_optimizer_numbers(learning_rate: Any, head_learning_rate: Any = None, weight_decay: Any = 0.0,
                            warmup_ratio: Any = 0.0) -> None:
    """Refuse learning rates that are not positive and a negative weight decay (either trains the wrong way), and a
    warm-up that is not a fraction of the run."""
    if not _number(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate={learning_rate!r}: use a positive learning rate")
    if head_learning_rate is not None and (not _number(head_learning_rate) or head_learning_rate <= 0):
        raise ValueError(f"head_learning_rate={head_learning_rate!r}: use a positive learning rate, or leave it "
                         "unset to train the head at learning_rate")
    if not _number(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay!r}: use 0 (no decay) or a positive value, e.g. 0.01")
    if not _number(warmup_ratio) or not 0 <= warmup_ratio < 1:
        raise ValueError(f"warmup_ratio={warmup_ratio!r}: use a fraction in [0, 1)")


def check_model_settings(settings: dict[str, Any]) -> None:
    """:func:`check_optimizer_numbers` on a config's ``model`` section (values it leaves out keep the defaults)."""
    check_optimizer_numbers(settings.get("learning_rate", 2e-5), settings.get("head_learning_rate"),
                            settings.get("weight_decay", 0.0), settings.get("warmup_ratio", 0.0))


def check_data_matches(module: Any, spec: Any) -> None:
    """The model's task must be the data's (``spec``, the data module's task; None for a user's own data module):
    another task's labels would train (or crash) the wrong head."""
    if spec is None or getattr(spec, "name", None) is None or spec.name == module.spec.name:
        return
    raise ValueError(f"the model is for task {module.spec.name!r} but the data module holds task {spec.name!r}: "
                     "give PETModule and the data module the same task")


def max_input_length(model: nn.Module) -> int | None:
    """The longest input the model's position embeddings cover (None when it does not say)."""
    from pet_lightning.strategies.base import backbone_of, unwrap

    hf = unwrap(model)
    positions = getattr(hf.config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return None
    # RoBERTa-style embeddings number positions from padding_idx + 1; BERT's from 0.
    padding_idx = getattr(getattr(backbone_of(hf), "embeddings", None), "padding_idx", None)
    return positions - (0 if padding_idx is None else padding_idx + 1)


def check_max_length(module: Any, max_length: int | None) -> None:
    """Refuse a ``max_length`` beyond the model's positions at fit start, not when a long example first arrives."""
    limit = max_input_length(module.model)
    if max_length is not None and limit is not None and max_length > limit:
        raise ValueError(f"max_length={max_length} exceeds the {limit} positions of backbone "
                         f"{module.backbone_name!r}: use max_length <= {limit}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


__all__ = ["check_data_matches", "check_max_length", "check_model_settings", "check_optimizer_numbers",
           "max_input_length"]
