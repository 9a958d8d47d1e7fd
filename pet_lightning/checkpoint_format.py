"""What a PETModule checkpoint holds, and the checks before one is loaded into a module.

A checkpoint keeps only what trains: the trainable tensors, and of partly trained (masked) tensors only the values
at their mask positions, AdamW moments shrunk the same way (:func:`pack_state`). Its ``pet_lightning`` entry names
the backbone, task and strategy; :func:`check_identity` and :func:`check_fit` refuse a file of another model with
one line before anything loads, and :func:`unpack_state` completes the state from a fresh build of the pretrained
source. :class:`~pet_lightning.module.PETModule`'s checkpoint hooks call these in that order.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from pet_lightning.checkpoint_io import CheckpointError

CHECKPOINT_FORMAT = 1


def _mask_index(mask: torch.Tensor) -> torch.Tensor:
    """Flat positions of the True elements: far smaller than the bool mask for sparse selections."""
    index = mask.flatten().nonzero().squeeze(1).cpu()
    return index.int() if mask.numel() < 2**31 else index


def _unpack_mask(stored: torch.Tensor | dict[str, Any]) -> torch.Tensor:
    if isinstance(stored, torch.Tensor):
        return stored
    mask = torch.zeros(math.prod(stored["shape"]), dtype=torch.bool)
    mask[stored["index"].long()] = True
    return mask.view(tuple(stored["shape"]))


def pack_state(module, state_dict: dict[str, torch.Tensor], optimizer_states: list | None) -> tuple[dict, dict]:
    """What a PETModule checkpoint keeps: the trainable tensors, and of partly trained (masked) tensors only the
    values at their mask positions (the rest is the pretrained tensor); AdamW moments of masked tensors shrink
    the same way. Returns ``(state_dict, pet_lightning entry)``; ``optimizer_states`` is packed in place."""
    keep = module.trainable_state_keys()
    state = {k: v for k, v in state_dict.items() if k in keep}
    masks = {name: mask.cpu() for name, mask in module.report.masks.items()}
    masked_values = {
        name: state.pop(f"model.{name}").detach().cpu().flatten()[_mask_index(mask)]
        for name, mask in masks.items()
        if f"model.{name}" in state
    }
    info = {
        "format": CHECKPOINT_FORMAT,
        "backbone": module.backbone_name,
        "task": module.spec.name,
        "strategy": module.strategy.config_dict(),
        "report": module.report.as_dict(),
        "masks": {name: {"shape": tuple(mask.shape), "index": _mask_index(mask)} for name, mask in masks.items()},
        "masked_values": masked_values,
        "packed_optimizer_states": _pack_optimizer_states(module, optimizer_states, masks),
    }
    return state, info


def _pack_optimizer_states(module, optimizer_states: list | None, masks: dict[str, torch.Tensor]) -> dict:
    """Shrink AdamW moments of partly trained tensors to their mask positions (they are zero elsewhere).

    Returns ``{optimizer: {state index: (parameter name, packed keys)}}`` for :func:`unpack_state`. A moment that
    is not zero off the mask is kept whole.
    """
    if not masks or not optimizer_states or module._trainer is None:
        return {}
    names = {id(p): name for name, p in module.model.named_parameters()}
    packed: dict[int, dict[int, tuple[str, list[str]]]] = {}
    for opt_index, optimizer in enumerate(module.trainer.optimizers):
        states = optimizer_states[opt_index]["state"]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for param_index, param in enumerate(params):
            name = names.get(id(param))
            if name not in masks or param_index not in states:
                continue
            mask = masks[name].to(param.device)
            # A new dict: the one in the checkpoint is the optimizer's live state.
            state = dict(states[param_index])
            keys = [
                key
                for key, value in state.items()
                if isinstance(value, torch.Tensor) and value.shape == mask.shape and not value[~mask].any()
            ]
            for key in keys:
                state[key] = state[key][mask]
            states[param_index] = state
            if keys:
                packed.setdefault(opt_index, {})[param_index] = (name, keys)
    return packed


def _strategy_name(config: dict[str, Any] | None) -> str:
    return repr(config.get("name")) if isinstance(config, dict) else repr(config)


def check_identity(module, checkpoint: dict[str, Any], source: str) -> dict[str, Any]:
    """The checkpoint's ``pet_lightning`` entry, once it is known to be of this module's backbone, task and run
    plan; else one :class:`CheckpointError` line naming the file and the mismatch."""
    info = checkpoint.get("pet_lightning")
    if not isinstance(info, dict):
        raise CheckpointError(
            f"checkpoint {source} was not written by pet_lightning (no 'pet_lightning' entry): load it with plain "
            "Lightning"
        )
    if info.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {source} has format {info.get('format')}, this pet_lightning reads {CHECKPOINT_FORMAT}: "
            "use the pet_lightning version that wrote it"
        )
    if info.get("backbone") != module.backbone_name:
        raise CheckpointError(
            f"checkpoint {source} is of backbone {info.get('backbone')!r}, the model of {module.backbone_name!r}: "
            f"build the model with backbone {info.get('backbone')!r} (PETModule.load_from_checkpoint does)"
        )
    hparams = checkpoint.get("hyper_parameters") or {}
    task = info.get("task") or hparams.get("task")
    if task is not None and task != module.spec.name and task != module.hparams.get("task"):
        raise CheckpointError(
            f"checkpoint {source} is of task {task!r}, the model of {module.spec.name!r}: build the model for "
            f"task {task!r}"
        )
    live = module.strategy.config_dict()
    # A two-stage run changes strategy mid-run: any strategy of the same run plan (constructor strategy) loads.
    if info.get("strategy") != live and hparams.get("strategy") != module.hparams.get("strategy"):
        raise CheckpointError(
            f"checkpoint {source} trains strategy {_strategy_name(info.get('strategy'))} with settings "
            f"{info.get('strategy')}, the model {_strategy_name(live)} with {live}: build the model with the "
            "checkpoint's strategy"
        )
    return info


def check_fit(checkpoint, info: dict[str, Any], model, report, source: str) -> dict[str, torch.Tensor]:
    """Refuse a checkpoint whose tensors do not fit ``model`` (the build they will be loaded into), before
    anything is loaded; returns the checkpoint's masks."""
    masks = {name: _unpack_mask(mask) for name, mask in info.get("masks", {}).items()}
    for name, mask in masks.items():
        if name in report.masks and not torch.equal(report.masks[name].cpu(), mask):
            raise CheckpointError(
                f"checkpoint {source}: mask of {name} differs from the checkpoint's: build the module with the same "
                "init_seed"
            )
    target = {f"model.{k}": v for k, v in model.state_dict().items()}
    for key, value in checkpoint.get("state_dict", {}).items():
        if key not in target:
            raise CheckpointError(
                f"checkpoint {source} holds {key}, which the model lacks: it was written for another model or "
                "strategy; build the model with the checkpoint's settings"
            )
        if tuple(value.shape) != tuple(target[key].shape):
            raise CheckpointError(
                f"checkpoint {source}: {key} has shape {tuple(value.shape)}, the model's {tuple(target[key].shape)}: "
                "build the model with the checkpoint's settings (backbone, task, strategy)"
            )
    for name, values in info.get("masked_values", {}).items():
        key = f"model.{name}"
        if key not in target or name not in masks or tuple(masks[name].shape) != tuple(target[key].shape) or (
            values.numel() != int(masks[name].sum())
        ):
            raise CheckpointError(
                f"checkpoint {source}: the stored values of {name} do not fit the model's tensor: build the model "
                "with the checkpoint's settings"
            )
    trainable = {f"model.{name}" for name in report.trainable_names}
    missing = trainable - set(checkpoint.get("state_dict", {})) - {f"model.{n}" for n in info.get("masked_values", {})}
    if missing:
        raise CheckpointError(
            f"checkpoint {source} lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]}): it was written "
            "for another strategy or model; pass the matching model settings"
        )
    return masks


def unpack_state(checkpoint, info: dict[str, Any], masks: dict[str, torch.Tensor], built: dict) -> None:
    """Complete the checkpoint's state dict from ``built`` (the fresh build's tensors: the pretrained backbone,
    init_seed's modules), so that the strict load that follows sees every key; masked tensors get the stored values
    at their mask positions; packed optimizer moments are expanded back (zero off the mask)."""
    state = checkpoint["state_dict"]
    for name, values in info.get("masked_values", {}).items():
        full = built[f"model.{name}"].detach().clone().cpu()
        full.view(-1)[_mask_index(masks[name]).long()] = values.to(full.dtype)
        state[f"model.{name}"] = full
    for opt_index, entries in info.get("packed_optimizer_states", {}).items():
        states = checkpoint["optimizer_states"][opt_index]["state"]
        for param_index, (name, keys) in entries.items():
            mask = masks[name]
            for key in keys:
                packed = states[param_index][key]
                full = torch.zeros(mask.numel(), dtype=packed.dtype, device=packed.device)
                full[_mask_index(mask).long().to(packed.device)] = packed
                states[param_index][key] = full.view(mask.shape)
    for key, value in built.items():
        state.setdefault(key, value)


__all__ = ["CHECKPOINT_FORMAT", "check_fit", "check_identity", "pack_state", "unpack_state"]
