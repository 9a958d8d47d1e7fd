"""Checkpoint files that survive crashes and refuse to be misread.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file beside its target, flushes it to disk
  and renames it into place, so a crash, a full disk or a kill mid-write leaves the previous file intact. It loads
  with ``weights_only=True`` always (a checkpoint holding pickled objects is refused, not executed) and turns a
  truncated or corrupt file into one :class:`CheckpointError` line naming the file.
* :func:`is_resumable` tells a checkpoint a run can continue from (optimizer and loop state) from a weights-only
  one.

What a PETModule checkpoint holds is :mod:`pet_lightning.checkpoint_format`'s business; this module only moves
files.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from pet_lightning.errors import PetLightningError

TEMP_SUFFIX = ".tmp-write"


class CheckpointError(PetLightningError):
    """A checkpoint file that cannot be used as asked; the message names the file, the problem and the fix."""


def is_local(path: _PATH) -> bool:
    """Whether ``path`` is a file on this machine (a plain path or ``file://``), not a remote store."""
    return "://" not in str(path) or str(path).startswith("file://")


def local_path(path: _PATH) -> Path:
    return Path(str(path).removeprefix("file://"))


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes through a temporary file + rename and loads with ``weights_only=True``.

    Remote paths (``s3://``...) keep Lightning's own transactional write. ``on_saved`` callables receive
    ``(path, checkpoint)`` after each file is in place (the resume callback records the latest resumable one).
    """

    def __init__(self) -> None:
        super().__init__()
        self.on_saved: list[Callable[[str, dict[str, Any]], None]] = []

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
        else:
            target = local_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Streamed: a buffer would hold the whole state (GBs at paper scale) in memory twice.
            atomic_write(target, lambda handle: torch.save(checkpoint, handle))
        for listener in self.on_saved:
            listener(str(path), checkpoint)

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = lambda storage, loc: storage, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # weights_only is forced: Lightning passes None by default, and False would unpickle arbitrary objects.
        return load_checkpoint_file(path, map_location=map_location)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that readers see the old file or the new one, never a part of either."""
    atomic_write(target, lambda handle: handle.write(data))


def atomic_write(target: Path, write: Callable[[BinaryIO], Any]) -> None:
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
    if is_local(path) and local_path(path).is_dir():
        folder, files = local_path(path), sorted(local_path(path).rglob("*.ckpt"))
        kind = "an export folder (load it with pet_lightning.export.load_exported)" if (
            folder / "pet_lightning.json").is_file() else "a directory"
        raise CheckpointError(f"checkpoint {name} is {kind}, not a checkpoint file: pass a .ckpt file"
                              f"{f' (e.g. {files[-1]})' if files else ''}")
    if is_local(path) and not local_path(path).is_file():
        raise CheckpointError(f"checkpoint {name} does not exist: check the path (--ckpt_path)")
    try:
        if mmap and is_local(path):
            checkpoint = torch.load(local_path(path), map_location="cpu", weights_only=True, mmap=True)
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


__all__ = [
    "TEMP_SUFFIX",
    "AtomicCheckpointIO",
    "CheckpointError",
    "atomic_write",
    "atomic_write_bytes",
    "install_atomic_checkpoint_io",
    "is_local",
    "is_resumable",
    "load_checkpoint_file",
    "local_path",
]
