"""Checkpoint files that survive crashes and refuse to be misread.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file beside its target, flushes it to disk
  and renames it into place, so a crash, a full disk or a kill mid-write leaves the previous file intact. It loads
  with ``weights_only=True`` always (a checkpoint holding pickled objects is refused, not executed) and turns a
  truncated or corrupt file into one :class:`CheckpointError` line naming the file.
* :func:`is_resumable` tells a checkpoint a run can continue from (optimizer and loop state) from a weights-only
  one.
* :func:`run_fingerprint` names the configuration of a run, so that auto-resume (see
  :mod:`pet_lightning.callbacks.resume`) only ever continues the run it belongs to.

Test-only fault injection: ``PET_LIGHTNING_FAULT=kill_in_write=<step>`` SIGKILLs the process half-way through
writing the checkpoint of global step ``<step>``; ``oserror_in_write=<step>`` raises ``OSError`` there instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import signal
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

FAULT_ENV = "PET_LIGHTNING_FAULT"
TEMP_SUFFIX = ".tmp-write"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used as asked; the message names the file, the problem and the fix."""


def fault_setting(name: str) -> int | None:
    """The step of the test-only fault ``name`` in ``PET_LIGHTNING_FAULT`` (``a=3,b=5``), or None."""
    for item in os.environ.get(FAULT_ENV, "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == name and value.strip():
            return int(value)
    return None


def _is_local(path: _PATH) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes through a temporary file + rename and loads with ``weights_only=True``.

    Remote paths (``s3://``...) keep Lightning's own transactional write. ``on_saved`` callables receive
    ``(path, checkpoint)`` after each file is in place (the resume callback records the latest resumable one).
    """

    def __init__(self) -> None:
        super().__init__()
        self.on_saved: list[Callable[[str, dict[str, Any]], None]] = []

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
        else:
            target = Path(str(path).removeprefix("file://"))
            target.parent.mkdir(parents=True, exist_ok=True)
            if os.environ.get(FAULT_ENV):
                # The fault hooks cut the file in half: they need its bytes first.
                buffer = io.BytesIO()
                torch.save(checkpoint, buffer)
                atomic_write_bytes(target, buffer.getvalue(), step=checkpoint.get("global_step"))
            else:
                # Streamed: a buffer would hold the whole state (GBs at paper scale) in memory twice.
                atomic_write(target, lambda handle: torch.save(checkpoint, handle))
        for listener in self.on_saved:
            listener(str(path), checkpoint)

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = lambda storage, loc: storage, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # weights_only is forced: Lightning passes None by default, and False would unpickle arbitrary objects.
        return load_checkpoint_file(path, map_location=map_location)


def atomic_write_bytes(target: Path, data: bytes, step: int | None = None) -> None:
    """Write ``data`` to ``target`` so that readers see the old file or the new one, never a part of either."""

    def write(handle: BinaryIO) -> None:
        half = len(data) // 2
        handle.write(data[:half])
        if step is not None and fault_setting("kill_in_write") == step:
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        if step is not None and fault_setting("oserror_in_write") == step:
            raise OSError(28, "No space left on device (injected by PET_LIGHTNING_FAULT)", str(handle.name))
        handle.write(data[half:])

    atomic_write(target, write)


def atomic_write(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file beside ``target``, then sync and rename it into place: readers see the old
    file or the new one, never a part of either."""
    temp = target.with_name(f".{target.name}{TEMP_SUFFIX}")
    try:
        with open(temp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the folder entry is on disk.
    with contextlib.suppress(OSError):
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def install_atomic_checkpoint_io(trainer) -> None:
    """Give ``trainer``'s strategy an :class:`AtomicCheckpointIO` unless the user set a CheckpointIO of their own."""
    strategy = getattr(trainer, "strategy", None)
    if strategy is not None and type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()


def load_checkpoint_file(path: _PATH, map_location: Any | None = "cpu", mmap: bool = False) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; any failure becomes one :class:`CheckpointError` naming the file."""
    from lightning.fabric.utilities.cloud_io import _load

    name = str(path)
    if _is_local(path) and Path(name.removeprefix("file://")).is_dir():
        folder, files = Path(name.removeprefix("file://")), sorted(Path(name.removeprefix("file://")).rglob("*.ckpt"))
        kind = "an export folder (load it with pet_lightning.export.load_exported)" if (
            folder / "pet_lightning.json").is_file() else "a directory"
        raise CheckpointError(f"checkpoint {name} is {kind}, not a checkpoint file: pass a .ckpt file"
                              f"{f' (e.g. {files[-1]})' if files else ''}")
    if _is_local(path) and not Path(name.removeprefix("file://")).is_file():
        raise CheckpointError(f"checkpoint {name} does not exist: check the path (--ckpt_path)")
    try:
        if mmap and _is_local(path):
            checkpoint = torch.load(name.removeprefix("file://"), map_location="cpu", weights_only=True, mmap=True)
        else:
            checkpoint = _load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a paragraph; its one telling line names what the restricted unpickler refused.
        lines = [line.strip() for line in str(err).splitlines() if "WeightsUnpickler error" in line]
        detail = (lines[0] if lines else type(err).__name__).removeprefix("WeightsUnpickler error: ")[:160]
        if "Unsupported global" in str(err):
            raise CheckpointError(
                f"checkpoint {name} holds pickled Python objects, which are not loaded (weights_only=True): "
                f"re-save it with tensors and plain values only ({detail})"
            ) from None
        raise CheckpointError(
            f"checkpoint {name} is truncated or corrupt ({detail}): use an intact checkpoint, e.g. the previous "
            "one of the run"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {name} is truncated or corrupt ({first[:160]}): use an intact checkpoint, e.g. the "
            "previous one of the run"
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {name} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


def is_resumable(checkpoint: dict[str, Any]) -> bool:
    """Whether a run can continue from ``checkpoint``: it holds the optimizer and the loops, not just weights."""
    return bool(checkpoint.get("optimizer_states")) and "loops" in checkpoint


def run_fingerprint(parts: dict[str, Any]) -> str:
    """A short, stable name for a configuration (JSON of ``parts``, unknown types by ``repr``)."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def repair_epoch_end_restart(trainer) -> bool:
    """Make a fit resumed from a checkpoint of an epoch's last batch start the next epoch like any other.

    Lightning (2.6) moves the epoch counter on for such a checkpoint but keeps its "restarted mid-epoch" stage, so
    the next epoch skips ``on_train_epoch_start`` (a two-stage run never switches) and its ready/started counters,
    and a checkpoint written later in that epoch then restores as the *end* of an epoch. Called at train start,
    after Lightning's own restart bookkeeping; returns whether it acted.
    """
    fit_loop = trainer.fit_loop
    epoch_loop = fit_loop.epoch_loop
    if fit_loop.restarted_mid_epoch and epoch_loop.restarted_on_train_batch_end and (
        epoch_loop.batch_progress.is_last_batch
    ):
        fit_loop.reset_restart_stage()
        return True
    return False


# ------------------------------------------------------------------------------ PETModule checkpoint contents
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


__all__ = [
    "CHECKPOINT_FORMAT",
    "FAULT_ENV",
    "AtomicCheckpointIO",
    "CheckpointError",
    "atomic_write",
    "atomic_write_bytes",
    "check_fit",
    "check_identity",
    "fault_setting",
    "is_resumable",
    "install_atomic_checkpoint_io",
    "load_checkpoint_file",
    "pack_state",
    "repair_epoch_end_restart",
    "run_fingerprint",
    "unpack_state",
]
