"""The optimizer every training path builds: AdamW, with torch's fused kernel wherever the parameters allow it.

Why fused: torch's fused kernel steps every trainable tensor in one pass, several times faster than its default
(foreach) kernel, and Hugging Face Trainer defaults to it (``optim="adamw_torch_fused"`` for torch >= 2.8): with
the default kernel, full fine-tuning would be slower per step than Trainer for this reason alone (measured in
``docs/performance.md``, "Fused AdamW"). Fits that clip gradients under mixed precision keep the default kernel
(:func:`adamw`). The fused kernel computes the same update; it rounds differently (last bits of float32), as any
change of kernel does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

# Devices with a fused AdamW kernel in every torch this project supports (torch >= 2.4 added CPU).
FUSED_DEVICES = frozenset({"cpu", "cuda"})


def fused_supported(params: Iterable[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW accepts every tensor: plain floating-point tensors on a fused-kernel device.

    Tensor subclasses (DTensor shards of tensor parallelism, peft's quantized weights) keep the default kernel.
    """
    params = list(params)
    return bool(params) and all(
        type(p) in (torch.Tensor, torch.nn.Parameter) and p.is_floating_point() and p.device.type in FUSED_DEVICES
        for p in params
    )


def fused_allowed(trainer: Any) -> bool:
    """Whether ``trainer`` (a ``lightning.Trainer`` or None) runs a fused optimizer.

    Lightning's mixed-precision plugin (``16-mixed``, ``bf16-mixed``) refuses gradient clipping with a fused
    optimizer, because with a grad scaler the fused step unscales gradients itself, after clipping would have seen
    them scaled; such a fit keeps the default kernel.
    """
    from lightning.pytorch.plugins.precision import MixedPrecision

    if trainer is None or not getattr(trainer, "gradient_clip_val", None):
        return True
    return not isinstance(getattr(trainer, "precision_plugin", None), MixedPrecision)


def adamw(groups: list[dict[str, Any]], lr: float, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, allow_fused: bool = True) -> torch.optim.AdamW:
    """AdamW over ``groups`` (``parameter_groups`` of ``PETModule``), fused when ``allow_fused`` and
    :func:`fused_supported`."""
    params = [p for g in groups for p in g["params"]]
    fused = allow_fused and fused_supported(params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


# ------------------------------------------------------------------------------------------------ schedules
SCHEDULES = ("linear", "sat_annealing")


def sat_annealing_factor(step: int, total: int, warmup: int, constant_steps: int = 100,
                         constant_rate: float = 0.05) -> float:
    """The EH-FT code's learning-rate factor at ``step`` of a stage (SwissArmyTransformer ``AnnealingLR``,
    ``SAT/training/learning_rates.py:42-50`` with ``auto_warmup_steps=100``, ``auto_warmup_rate=0.05``).

    The first ``constant_steps`` steps run at ``constant_rate``; then ``step / warmup`` up to ``warmup``; then
    ``(total - (step - warmup)) / total``, which ends at ``warmup / total`` of the peak (10% for a 10% warm-up),
    not at 0.
    """
    if step <= constant_steps:
        return constant_rate
    if warmup > 0 and step <= warmup:
        return step / warmup
    return max(0.0, (total - (step - warmup)) / total)


def build_scheduler(optimizer: torch.optim.Optimizer, settings: dict[str, Any],
                    total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step schedule over ``total`` steps: ``settings["warmup_ratio"]`` and ``settings.get("schedule")``
    (None or ``{"name": "linear"}``: warm-up then linear decay to 0, Hugging Face's; ``{"name": "sat_annealing",
    "constant_steps": 100, "constant_rate": 0.05}``: :func:`sat_annealing_factor`)."""
    schedule = dict(settings.get("schedule") or {"name": "linear"})
    name = schedule.pop("name", "linear")
    warmup = int(settings["warmup_ratio"] * total)
    if name == "linear":
        from transformers import get_linear_schedule_with_warmup

        return get_linear_schedule_with_warmup(optimizer, warmup, total)
    if name == "sat_annealing":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: sat_annealing_factor(step, total, warmup, **schedule))
    raise ValueError(f"schedule {name!r} is unknown: choose one of {', '.join(SCHEDULES)}")


def _no_decay(module: nn.Module, param_name: str) -> bool:
    """Biases and normalisation weights get no weight decay (as in BERT and the PETuning code bases)."""
    return param_name.endswith("bias") or "norm" in type(module).__name__.lower()


def parameter_groups(model: nn.Module, head_names: set[str], masked: set[str],
                     scale_of: Callable[[str], float] | None, weight_decay: float,
                     learning_rate: float, head_learning_rate: float) -> list[dict[str, Any]]:
    """AdamW groups: head vs. the rest (own learning rates), each with and without weight decay.

    Only parameters that require grad are given to the optimizer, so frozen tensors get no state. Partly trained
    (``masked``) tensors get no weight decay: decay would move their frozen elements. ``scale_of`` (a strategy's
    ``learning_rate_scale``, LoRA+'s ``lora_plus_ratio``) puts the body tensors it scales in their own groups at
    that multiple of ``learning_rate``.
    """
    groups: dict[tuple[bool, bool, float], list[nn.Parameter]] = {}
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            name = f"{module_name}.{param_name}" if module_name else param_name
            decay = not (_no_decay(module, param_name) or name in masked)
            is_head = name in head_names
            scale = 1.0 if is_head or scale_of is None else float(scale_of(name))
            groups.setdefault((is_head, decay, scale), []).append(param)
    return [
        {
            "params": params,
            "lr": head_learning_rate if is_head else learning_rate * scale,
            "weight_decay": weight_decay if decay else 0.0,
            "name": f"{'head' if is_head else 'body'}{'' if scale == 1 else f'_x{scale:g}'}"
            f"{'' if decay else '_no_decay'}",
        }
        for (is_head, decay, scale), params in sorted(groups.items())
    ]
