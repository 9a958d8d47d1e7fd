"""Reading sweep and study files: YAML with float exponents, recursive merges, stable hashes, and study scales.

A *study file* (``configs/studies/<name>.yaml``) is a sweep file with two more keys:

* ``study``: the report layout its results want (``transferability_table1``, ...; see :mod:`pet_lightning.studies`);
* ``scales``: named settings merged over the rest of the file, one per scale the study runs at (``cpu``: the offline
  MiniLM on this 2-core machine; ``paper``: the paper's models, seeds and epochs, for GPUs and clusters).

:func:`apply_scale` picks one scale, so a study file is one sweep per scale; the scale's name goes into every
record (and its default results folder), so results of two scales never mix.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from pet_lightning.errors import PetLightningError
from pet_lightning.paths import from_start, start_dir


class SweepError(PetLightningError):
    """A sweep file or results file that cannot be used; the message names the fix."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-5`` as a string; configs mean a float (as in YAML 1.2)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    named, path = path, Path(from_start(path))
    if not path.is_file():
        raise SweepError(f"config file {named} does not exist: fix the path (relative to {start_dir()})")
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SweepError(f"{named} holds a {type(data).__name__}, not a mapping of settings: fix the file")
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins, lists are replaced whole."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def digest(obj: Any) -> str:
    """Short stable hash of a JSON-able object (keys sorted)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def apply_scale(raw: dict[str, Any], scale: str | None, path: str | Path) -> dict[str, Any]:
    """The sweep settings of one scale of a study file (``raw`` itself for a plain sweep file).

    The scale's settings are merged over the file's shared ones (mappings merge, lists are replaced), and the
    result names its ``scale``. ``scale=None`` takes the file's ``default_scale`` (``cpu`` unless it says).
    """
    scales = raw.get("scales")
    if scales is None:
        if scale is not None:
            raise SweepError(f"{path} has no `scales`: drop --scale {scale} (it is a plain sweep file)")
        return raw
    if not isinstance(scales, dict) or not scales:
        raise SweepError(f"{path}: `scales` must map scale names (cpu, paper) to their settings")
    shared = {key: value for key, value in raw.items() if key not in ("scales", "default_scale")}
    chosen = scale or raw.get("default_scale", "cpu")
    if chosen not in scales:
        raise SweepError(f"{path} has no scale {chosen!r}: choose one of {', '.join(scales)} (--scale)")
    merged = deep_merge(shared, scales[chosen] or {})
    merged["scale"] = chosen
    return merged
