"""peft configs as strategy settings: resolve ``{class_path, init_args}``, store a config canonically (JSON, only
the settings that differ from the class defaults) and build it with one-line errors."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import warnings
from typing import Any

from pet_lightning.strategies.base import StrategyError

# Config fields the strategy sets itself (or that only describe where a saved adapter came from).
MANAGED_FIELDS = frozenset({
    "peft_type", "task_type", "modules_to_save", "base_model_name_or_path", "revision", "inference_mode",
    "auto_mapping", "peft_version",
})


def resolve_config_class(class_path: str) -> type:
    """``peft.VeraConfig`` (or a full module path) -> the class; a one-line error for anything else."""
    from peft import PeftConfig

    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name or "peft"), class_name)
    except (ImportError, AttributeError):
        raise StrategyError(
            f"peft config class {class_path!r} does not exist: use a peft config class, e.g. peft.LoraConfig"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, PeftConfig)):
        raise StrategyError(f"{class_path} is not a peft config class: use one such as peft.LoraConfig")
    return cls


def class_path_of(cls: type) -> str:
    import peft

    return f"peft.{cls.__name__}" if getattr(peft, cls.__name__, None) is cls else f"{cls.__module__}.{cls.__name__}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return value


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def canonical_config(config: Any) -> dict[str, Any]:
    """A peft config object or ``{"class_path": ..., "init_args": {...}}`` -> the canonical JSON-serialisable
    dict: class path plus the settings that differ from the class's defaults (those the strategy sets excluded).

    The canonical form is what checkpoints store and compare on load, so one config always gives one dict.
    """
    if isinstance(config, dict):
        unknown = set(config) - {"class_path", "init_args"}
        if "class_path" not in config or unknown:
            raise StrategyError(
                f"peft config {config} must be {{class_path: peft.<Name>Config, init_args: {{...}}}}: "
                "e.g. {class_path: peft.LoraConfig, init_args: {r: 8}}"
            )
        cls = resolve_config_class(config["class_path"])
        config = build_config(cls, dict(config.get("init_args") or {}))
    from peft import PeftConfig

    if not isinstance(config, PeftConfig):
        raise StrategyError(
            f"peft strategy config {config!r} is not a peft config: pass e.g. peft.LoraConfig(...) or "
            "{class_path: peft.LoraConfig, init_args: {...}}"
        )
    init_args = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if (f.name in MANAGED_FIELDS and f.name != "task_type") or _jsonable(value) == _jsonable(_field_default(f)):
            continue
        init_args[f.name] = _jsonable(value)
    try:
        json.dumps(init_args)
    except TypeError as err:
        raise StrategyError(
            f"{type(config).__name__} settings are not JSON-serialisable ({err}): use plain values"
        ) from None
    return {"class_path": class_path_of(type(config)), "init_args": init_args}


def build_config(cls: type, init_args: dict[str, Any], **managed: Any) -> Any:
    """Instantiate a peft config, turning its validation errors into one-line StrategyErrors."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(init_args) - names)
    if unknown:
        raise StrategyError(f"{cls.__name__} has no setting {', '.join(unknown)}: see its peft documentation")
    from peft import AdaLoraConfig

    if issubclass(cls, AdaLoraConfig) and init_args.get("total_step") is None:
        # peft insists on a total step count at construction; AdaLoraSchedule sets the trainer's at fit start.
        init_args["total_step"] = init_args.get("tinit", 0) + init_args.get("tfinal", 0) + 1
    try:
        with warnings.catch_warnings():
            # AdaLoraConfig warns that LoRA's `r` is unused whenever it differs from 8; the strategy sets init_r.
            warnings.filterwarnings("ignore", message=".*`r` is not used in AdaLora.*")
            # The CLI expands LoraConfig's defaults, LoftQ's included, which peft then says it ignores (it does,
            # unless init is loftq).
            warnings.filterwarnings("ignore", message=".*loftq_config. specified but will be ignored.*")
            return cls(**init_args, **managed)
    except (TypeError, ValueError) as err:
        raise StrategyError(f"{cls.__name__}({init_args}): {str(err).splitlines()[0]}") from None
