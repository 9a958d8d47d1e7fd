"""Memory accounting: bytes of the activations autograd keeps for backward, of optimizer state, of gradient buffers.

Frozen lower layers need no explicit ``torch.no_grad()``: autograd records nothing for an operation none of whose
inputs requires grad, so a layer whose parameters are frozen and whose input comes from frozen layers keeps no
activation and backward stops at the lowest layer that trains. :func:`saved_activation_bytes` measures that
directly (the bytes autograd saves, attributed to the layer that saved them), and the tests hold every strategy
to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from pet_lightning.strategies.base import backbone_of, unwrap


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of the encoder, bottom first (the longest ``ModuleList`` inside it)."""
    lists = [m for m in backbone_of(unwrap(model)).modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(unwrap(model)).__name__} has no list of layers in its encoder")
    return list(max(lists, key=len))


def layer_map(model: nn.Module) -> dict[str, nn.Module]:
    """``embeddings``, ``layer.0`` ... ``layer.N-1``: the parts of the encoder, bottom to top."""
    backbone = backbone_of(unwrap(model))
    parts: dict[str, nn.Module] = {}
    embeddings = getattr(backbone, "embeddings", None)
    if isinstance(embeddings, nn.Module):
        parts["embeddings"] = embeddings
    parts.update({f"layer.{i}": layer for i, layer in enumerate(encoder_layers(model))})
    return parts


@contextlib.contextmanager
def track_saved_tensors(model: nn.Module, parts: Mapping[str, nn.Module]) -> Iterator[dict[str, int]]:
    """Count the bytes of tensors autograd saves for backward while the block runs, per part of ``parts``.

    A tensor is charged to the innermost part running when it is saved (``other`` outside every part), once per
    storage; parameters are not counted (they exist anyway).
    """
    counts = {name: 0 for name in parts} | {"other": 0}
    seen: set[int] = set()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    running: list[str] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params and ptr not in seen:
            seen.add(ptr)
            counts[running[-1] if running else "other"] += storage.nbytes()
        return tensor

    def enter(name: str) -> None:
        running.append(name)

    def leave() -> None:
        running.pop()  # a forward hook that returned the popped name would replace the module's output

    handles = []
    for name, module in parts.items():
        handles.append(module.register_forward_pre_hook(lambda _m, _a, name=name: enter(name)))
        handles.append(module.register_forward_hook(lambda _m, _a, _o: leave()))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            yield counts
    finally:
        for handle in handles:
            handle.remove()


def saved_activation_bytes(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Bytes kept for backward by one training-mode forward of ``model`` on ``inputs``, per encoder part."""
    with track_saved_tensors(model, layer_map(model)) as counts:
        model(**inputs)
    return counts


def lowest_trained_layer(model: nn.Module) -> int | None:
    """Index of the lowest encoder layer with a parameter that trains; None when no layer trains."""
    for i, layer in enumerate(encoder_layers(model)):
        if any(p.requires_grad for p in layer.parameters()):
            return i
    return None


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the optimizer's per-parameter state (AdamW: two moments and a step per tensor)."""
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    )


def gradient_bytes(model: nn.Module) -> int:
    """Bytes of allocated gradient buffers (frozen tensors must have none)."""
    return sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
