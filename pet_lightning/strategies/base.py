"""The strategy contract: which parameters of a pretrained model train.

A strategy is a frozen settings dataclass (its fields are its settings, documented like peft's configs) registered by
name. ``apply(model)`` sets ``requires_grad`` on a Hugging Face ``*ForSequenceClassification`` /
``*ForMultipleChoice`` model (injecting modules first where the method needs them) and returns a
:class:`StrategyReport`: the counts the papers report, and everything the application created (gradient hooks,
element masks, patched layers), which ``report.remove()`` undoes. The strategy itself never changes, so one
strategy may be applied to many models. The task head always trains. Counts and percentages are over the backbone
only (``model.base_model``, the pretrained encoder), as the transferability and "Revisiting" studies report them.
"""

from __future__ import annotations

import dataclasses
from abc import ABC
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from pet_lightning.errors import PetLightningError

STRATEGIES: dict[str, type[Strategy]] = {}
ALIASES: dict[str, str] = {}


class StrategyError(PetLightningError):
    """A strategy cannot be built or applied as configured; the message names the problem and the fix."""


def register_strategy(name: str, *aliases: str):
    """Class decorator: make a strategy buildable by ``name`` (and aliases) from Python and YAML."""

    def decorate(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES[name] = cls
        for alias in aliases:
            ALIASES[alias] = name
        return cls

    return decorate


def build_strategy(strategy: str | dict[str, Any] | Strategy = "full", **kwargs: Any) -> Strategy:
    """Build a strategy from a name and settings, a ``{"name": ..., **settings}`` dict, or pass one through.

    >>> build_strategy("layernorm", where="attention")
    """
    if isinstance(strategy, Strategy):
        if kwargs:
            return dataclasses.replace(strategy, **kwargs)
        return strategy
    if isinstance(strategy, dict):
        settings = dict(strategy)
        name = settings.pop("name", None)
        if name is None:
            raise StrategyError(f"strategy settings {strategy} lack a 'name': add name: <one of {known_strategies()}>")
        return build_strategy(name, **settings, **kwargs)
    key = ALIASES.get(strategy.strip().lower(), strategy.strip().lower())
    if key not in STRATEGIES:
        raise StrategyError(f"unknown strategy {strategy!r}: choose one of {known_strategies()}")
    cls = STRATEGIES[key]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise StrategyError(
            f"strategy {key!r} has no setting {', '.join(unknown)}: "
            f"its settings are {', '.join(sorted(names)) or 'none'}"
        )
    return cls(**kwargs)


def known_strategies() -> str:
    return ", ".join(sorted(STRATEGIES) + sorted(ALIASES))


@dataclass
class StrategyReport:
    """What a strategy set to train, counted the way the papers count, and the handle on what it created.

    Attributes:
        strategy: Strategy name.
        trainable: Trainable backbone parameters (scalars; elements for masked strategies; injected method
            parameters for LoRA, adapters and prefixes).
        total: All parameters of the pretrained backbone (injected parameters excluded).
        head: Parameters of the task head (they always train).
        model: The model to train: the one passed in, or a wrapper around it (peft methods).
        trainable_names: Names (in ``model``) of every parameter tensor that requires grad, head included.
        head_names: Names of the head's parameter tensors.
        masks: Element masks of partially trained tensors (name -> bool tensor, True = trains); a random subset's
            draw, Child-Tuning's child network.
        settings: The strategy that applied itself (it undoes its own changes in :meth:`remove`).
        inputs: What ``apply`` was given beside the model (Child-Tuning's Fisher scores): applying ``settings``
            with them again builds the same masks.
        state: What the application replaced and :meth:`remove` puts back (Mixout's dropout probabilities).
        hooks: The gradient hooks that apply ``masks``.
    """

    strategy: str
    trainable: int
    total: int
    head: int
    model: nn.Module
    trainable_names: tuple[str, ...] = ()
    head_names: tuple[str, ...] = ()
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: Strategy | None = field(default=None, repr=False)
    inputs: dict[str, Any] = field(default_factory=dict, repr=False)
    state: dict[str, Any] = field(default_factory=dict, repr=False)
    hooks: list[RemovableHandle] = field(default_factory=list, repr=False)
    _plain: nn.Module | None = field(default=None, init=False, repr=False, compare=False)

    def remove(self) -> nn.Module:
        """Undo the application (gradient hooks, injected or patched modules); returns the plain Hugging Face model.

        A second call returns that model again without undoing anything twice.
        """
        if self._plain is None:
            for handle in self.hooks:
                handle.remove()
            self.hooks.clear()
            self._plain = self.settings.undo(self) if self.settings is not None else unwrap(self.model)
        return self._plain

    @property
    def percent(self) -> float:
        """100 * trainable / total, backbone only (head excluded)."""
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "trainable": self.trainable,
            "total": self.total,
            "percent": round(self.percent, 4),
            "head": self.head,
        }


def unwrap(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a wrapper (a peft ``PeftModel``), or the model itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def backbone_of(model: nn.Module) -> nn.Module:
    """The pretrained encoder of a task model (``model.bert``, ``model.roberta``, ...)."""
    hf = unwrap(model)
    backbone = getattr(hf, "base_model", None)
    if backbone is None or backbone is hf:
        raise StrategyError(
            f"{type(hf).__name__} has no separate pretrained encoder (base_model): load the model with an "
            "AutoModelForSequenceClassification or AutoModelForMultipleChoice class"
        )
    return backbone


def head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters of ``model`` that are not part of the pretrained encoder: the task head."""
    backbone_ids = {id(p) for p in backbone_of(model).parameters()}
    return {name: p for name, p in model.named_parameters() if id(p) not in backbone_ids}


class Strategy(ABC):  # noqa: B024 - concrete defaults on purpose: `full` is the base behaviour
    """Base of all strategies. Subclasses are frozen dataclasses (``@dataclass(frozen=True)``) whose fields are
    settings only; override :meth:`select` (module-wise choices), :meth:`gradient_masks` (element-wise choices),
    :meth:`choose` (both at once), or :meth:`prepare` and :meth:`undo` (injected modules). What an application
    creates lives in the :class:`StrategyReport` that :meth:`apply` returns, never on the strategy.

    ``allows_empty_backbone`` is True only for strategies that train nothing but the head on purpose
    (linear probing); every other strategy that selects nothing is an error.
    """

    name: ClassVar[str] = "base"
    allows_empty_backbone: ClassVar[bool] = False

    # -------------------------------------------------------------------------------- override points
    def prepare(self, model: nn.Module) -> nn.Module:
        """Inject the method's modules (or wrap the model); return the model to train."""
        return model

    def select(self, model: nn.Module) -> Iterable[str]:
        """Names (relative to the Hugging Face model) of backbone parameters that train. Default: all."""
        return [f"{prefix}.{name}" for prefix, name in _backbone_names(model)]

    def gradient_masks(self, model: nn.Module, selected: list[str]) -> dict[str, torch.Tensor]:
        """Element masks for tensors that only partly train (name -> bool tensor)."""
        return {}

    def choose(self, model: nn.Module, **inputs: Any) -> tuple[list[str], dict[str, torch.Tensor]]:
        """The backbone names that train and the element masks of those that partly train; ``inputs`` are what
        :meth:`apply` was given beside the model. Default: :meth:`select`, then :meth:`gradient_masks`."""
        selected = list(dict.fromkeys(self.select(model)))
        return selected, self.gradient_masks(model, selected, **inputs)

    def injected_parameters(self, model: nn.Module) -> set[str]:
        """Names of parameters the method added (excluded from the backbone's total)."""
        return set()

    def undo(self, applied: StrategyReport) -> nn.Module:
        """Undo :meth:`prepare` on ``applied.model`` (hooks are the report's); return the plain Hugging Face model.
        Called by :meth:`StrategyReport.remove`."""
        return unwrap(applied.model)

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None,
                  applied: StrategyReport | None = None) -> None:
        """Refuse (or warn about) settings that clash with the run, at fit start: the data's ``max_length`` and the
        trainer's ``precision`` are only known then; ``applied`` is the live application's report."""
        return None

    # -------------------------------------------------------------------------------------- the contract
    def config_dict(self) -> dict[str, Any]:
        """``{"name": ..., **settings}``; :func:`build_strategy` builds the same strategy from it."""
        return {"name": self.name, **dataclasses.asdict(self)}

    def apply(self, model: nn.Module, **inputs: Any) -> StrategyReport:
        """Set what trains in ``model`` and return the counts and the handle on what was created. The head always
        trains. ``inputs`` are data the strategy needs beside the model (Child-Tuning's ``fisher``)."""
        model = self.prepare(model)
        hf = unwrap(model)
        backbone = backbone_of(hf)
        injected = self.injected_parameters(model)
        prefix = _name_prefix(model, hf)
        model.requires_grad_(False)
        head = head_parameters(hf)
        head = {name: p for name, p in head.items() if prefix + name not in injected}
        for p in head.values():
            p.requires_grad_(True)
        parameters = dict(hf.named_parameters())
        selected, masks = self.choose(hf, **inputs)
        selected = list(dict.fromkeys(selected))
        unknown = [name for name in selected if name not in parameters]
        if unknown:
            raise StrategyError(f"strategy {self.name!r} selected names not in {type(hf).__name__}: {unknown[:3]}")
        for name in selected:
            parameters[name].requires_grad_(True)
        hooks = [parameters[name].register_hook(GradientMask(mask)) for name, mask in masks.items()]
        masked_counts = {name: int(mask.sum()) for name, mask in masks.items()}
        trainable = sum(masked_counts.get(name, parameters[name].numel()) for name in selected)
        trainable += sum(p.numel() for n, p in model.named_parameters() if n in injected and p.requires_grad)
        total = sum(p.numel() for n, p in backbone.named_parameters() if not _is_injected(n, hf, backbone, injected))
        if trainable == 0 and not self.allows_empty_backbone:
            raise StrategyError(
                f"strategy {self.name!r} selects no parameter in {type(hf).__name__}: check its settings "
                f"({self.config_dict()}) against this architecture"
            )
        return StrategyReport(
            strategy=self.name,
            trainable=trainable,
            total=total,
            head=sum(p.numel() for p in head.values()),
            model=model,
            trainable_names=tuple(n for n, p in model.named_parameters() if p.requires_grad),
            head_names=tuple(prefix + name for name in head),
            masks={prefix + name: mask for name, mask in masks.items()},
            settings=self,
            inputs=dict(inputs),
            hooks=hooks,
        )


class GradientMask:
    """A gradient hook that zeroes the gradient off ``mask``. The mask follows the gradient's device and dtype
    (kept once converted): the model may be moved to a GPU or cast after the strategy was applied."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        if self.mask.device != grad.device or self.mask.dtype != grad.dtype:
            self.mask = self.mask.to(device=grad.device, dtype=grad.dtype)
        return grad * self.mask


def _backbone_names(model: nn.Module) -> list[tuple[str, str]]:
    hf = unwrap(model)
    prefix = hf.base_model_prefix
    return [(prefix, name) for name, _ in backbone_of(hf).named_parameters()]


def _name_prefix(model: nn.Module, hf: nn.Module) -> str:
    """How names in the wrapper start, relative to names in the Hugging Face model (e.g. ``base_model.model.``)."""
    if model is hf:
        return ""
    for name, module in model.named_modules():
        if module is hf:
            return f"{name}."
    return ""


def _is_injected(name: str, hf: nn.Module, backbone: nn.Module, injected: set[str]) -> bool:
    full = f"{hf.base_model_prefix}.{name}"
    return any(item == full or item.endswith("." + full) for item in injected)


def report_injected(strategy: Strategy, model: nn.Module, added: set[str] | None = None) -> StrategyReport:
    """The counting rule of methods that inject their own tensors (peft methods, adapters): freeze everything but
    the method's tensors (``strategy.injected_parameters``) and the head; count them against the original backbone
    (without the method's tensors and any other ``added`` ones)."""
    hf = unwrap(model)
    method = strategy.injected_parameters(model)
    backbone_ids = {id(p) for p in backbone_of(hf).parameters()}
    names = dict(model.named_parameters())
    if any(".modules_to_save." in n for n in names):
        head = [n for n in names if ".modules_to_save." in n]
    else:
        head = [n for n, p in names.items() if id(p) not in backbone_ids and n not in method]
    model.requires_grad_(False)
    for name in (*method, *head):
        names[name].requires_grad_(True)
    trainable = sum(names[n].numel() for n in method)
    if trainable == 0:
        raise StrategyError(
            f"strategy {strategy.name!r} injected no parameter into {type(hf).__name__}: check its settings"
        )
    method_ids = {id(names[n]) for n in method | (added or set())}
    total = sum(p.numel() for p in backbone_of(hf).parameters() if id(p) not in method_ids)
    return StrategyReport(
        strategy=strategy.name,
        trainable=trainable,
        total=total,
        head=sum(names[n].numel() for n in head),
        model=model,
        trainable_names=tuple(n for n, p in model.named_parameters() if p.requires_grad),
        head_names=tuple(head),
        settings=strategy,
    )


@register_strategy("full", "full_ft", "finetune")
@dataclass(frozen=True)
class FullFineTuning(Strategy):
    """Every parameter trains (full fine-tuning)."""


@register_strategy("frozen", "linear_probe", "linear_probing", "head")
@dataclass(frozen=True)
class Frozen(Strategy):
    """Only the task head trains: the frozen-backbone / linear-probing row of the studies."""

    allows_empty_backbone: ClassVar[bool] = True

    def select(self, model: nn.Module) -> Iterable[str]:
        return []
