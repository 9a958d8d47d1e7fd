"""Injected methods through peft: LoRA, prefix tuning, prompt tuning and IA3 as registered strategies.

peft does the injection; these strategies choose per-architecture defaults, validate settings with one-line
errors, keep the task head trainable (peft ``modules_to_save``) and report counts the way the studies do:
``trainable`` is the method's own tensors, ``total`` the original backbone, the head is counted apart.

>>> report = build_strategy("lora", r=8, alpha=16).apply(hf_model)
>>> report.model  # a peft ``PeftModel``; train it, export it with ``pet_lightning.export``

On multiple-choice models (COPA) prefix and prompt tuning wrap the encoder instead of the whole model,
because peft's sequence-classification wrapper builds prefixes for ``[batch, length]`` inputs while the
multiple-choice model feeds the encoder ``[batch * choices, length]``.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from pet_lightning.strategies.base import (
    Strategy,
    StrategyError,
    StrategyReport,
    backbone_of,
    register_strategy,
    unwrap,
)

# Query and value projections, as in the LoRA paper and the "Revisiting" study's code.
LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "deberta-v2": ["query_proj", "value_proj"],
    "distilbert": ["q_lin", "v_lin"],
}
# IA3 scales keys, values and the input of the FFN's second layer (peft's mapping, extended to our families).
IA3_TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "bert": (["key", "value", "output.dense"], ["output.dense"]),
    "roberta": (["key", "value", "output.dense"], ["output.dense"]),
    "xlm-roberta": (["key", "value", "output.dense"], ["output.dense"]),
    "electra": (["key", "value", "output.dense"], ["output.dense"]),
    "deberta-v2": (["key_proj", "value_proj", "output.dense"], ["output.dense"]),
    "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
}


def head_module_names(hf: nn.Module) -> list[str]:
    """Top-level modules of the task model outside the encoder that hold parameters (``classifier``,
    DistilBERT's ``pre_classifier``, DeBERTa's ``pooler``): what peft must keep trainable and save."""
    backbone = backbone_of(hf)
    return [
        name
        for name, child in hf.named_children()
        if child is not backbone and any(True for _ in child.parameters())
    ]


def _model_type(hf: nn.Module) -> str:
    return getattr(getattr(hf, "config", None), "model_type", type(hf).__name__)


def _check_targets(strategy: str, hf: nn.Module, targets: list[str]) -> None:
    backbone_names = [name for name, _ in backbone_of(hf).named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in backbone_names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in backbone_of(hf).named_modules() if isinstance(m, nn.Linear)})
        raise StrategyError(
            f"{strategy}: target module {', '.join(missing)} does not exist in {type(hf).__name__}: "
            f"use names of its linear layers, e.g. {', '.join(leaves)}"
        )


@dataclass
class PeftStrategy(Strategy):
    """Base of the peft-backed strategies: subclasses build the ``peft`` config."""

    is_prompt_learning: ClassVar[bool] = False

    def peft_config(self, hf: nn.Module, task_type: str | None) -> Any:
        raise NotImplementedError

    def _wraps_encoder(self, hf: nn.Module) -> bool:
        return self.is_prompt_learning and type(hf).__name__.endswith("ForMultipleChoice")

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import get_peft_model

        hf = unwrap(model)
        if hasattr(hf, "peft_config") or model is not hf:
            raise StrategyError(f"{self.name}: the model already carries a peft method: call remove(model) first")
        if self._wraps_encoder(hf):
            prefix = hf.base_model_prefix
            encoder = get_peft_model(getattr(hf, prefix), self.peft_config(hf, "FEATURE_EXTRACTION"))
            setattr(hf, prefix, encoder)
            return hf
        config = self.peft_config(hf, "SEQ_CLS")
        config.modules_to_save = head_module_names(hf)
        return get_peft_model(hf, config)

    def apply(self, model: nn.Module) -> StrategyReport:
        with warnings.catch_warnings():
            # peft warns that token type ids are dropped by prompt learning on encoders; nothing to act on.
            warnings.filterwarnings("ignore", message=".*[Tt]oken type ids.*")
            wrapped = self.prepare(model)
        return _report(self, wrapped)

    def injected_parameters(self, model: nn.Module) -> set[str]:
        return {name for name, p in model.named_parameters() if _is_method_param(name)}

    def remove(self, model: nn.Module) -> nn.Module:
        """Drop the method (unmerged) and keep the trained head: returns the plain Hugging Face model."""
        from peft import PeftModel

        if isinstance(model, PeftModel):
            if not self.is_prompt_learning:
                model.base_model.unload()
            hf = model.get_base_model()
        else:
            hf = model
            prefix = hf.base_model_prefix
            encoder = getattr(hf, prefix)
            if isinstance(encoder, PeftModel):
                setattr(hf, prefix, encoder.get_base_model())
        _unwrap_saved_modules(hf)
        if hasattr(hf, "peft_config"):
            del hf.peft_config
        return hf


def _is_method_param(name: str) -> bool:
    return any(key in name for key in ("lora_", "ia3_", "prompt_encoder."))


def _unwrap_saved_modules(hf: nn.Module) -> None:
    from peft.utils.other import ModulesToSaveWrapper

    for name, module in list(hf.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent = hf.get_submodule(name.rpartition(".")[0]) if "." in name else hf
            active = module.active_adapters
            trained = module.modules_to_save[module.active_adapter] if active else module.original_module
            setattr(parent, name.rpartition(".")[2], trained)


def _report(strategy: Strategy, model: nn.Module) -> StrategyReport:
    """Freeze everything but the method's tensors and the head; count them against the original backbone."""
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
    method_ids = {id(names[n]) for n in method}
    total = sum(p.numel() for p in backbone_of(hf).parameters() if id(p) not in method_ids)
    return StrategyReport(
        strategy=strategy.name,
        trainable=trainable,
        total=total,
        head=sum(names[n].numel() for n in head),
        model=model,
        trainable_names=tuple(n for n, p in model.named_parameters() if p.requires_grad),
        head_names=tuple(head),
    )


@register_strategy("lora")
@dataclass
class LoRA(PeftStrategy):
    """Low-rank updates ``W + (alpha / r) * B A`` of chosen linear layers (peft ``LoraConfig``).

    Args:
        r: Rank of the update; positive.
        alpha: Scaling numerator (the update is scaled by ``alpha / r``).
        dropout: Dropout on the LoRA branch's input.
        target_modules: Linear layers to adapt (name suffixes). None: query and value of the architecture
            (``query``/``value`` for BERT, RoBERTa, ELECTRA; ``query_proj``/``value_proj`` for DeBERTa-v2;
            ``q_lin``/``v_lin`` for DistilBERT).
    """

    r: int = 8
    alpha: float = 16
    dropout: float = 0.1
    target_modules: list[str] | None = None

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise StrategyError(f"lora r={self.r}: the rank must be a positive integer, e.g. r: 8")
        if self.alpha <= 0:
            raise StrategyError(f"lora alpha={self.alpha}: use a positive scaling, e.g. alpha: 16")
        if not 0 <= self.dropout < 1:
            raise StrategyError(f"lora dropout={self.dropout}: use a probability in [0, 1)")

    def targets(self, hf: nn.Module) -> list[str]:
        if self.target_modules is not None:
            return list(self.target_modules)
        kind = _model_type(hf)
        if kind not in LORA_TARGETS:
            raise StrategyError(
                f"lora has no default target modules for model type {kind!r}: set target_modules, "
                f"e.g. [query, value]"
            )
        return LORA_TARGETS[kind]

    def peft_config(self, hf: nn.Module, task_type: str | None) -> Any:
        from peft import LoraConfig

        targets = self.targets(hf)
        _check_targets("lora", hf, targets)
        return LoraConfig(
            task_type=task_type, r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets
        )


@register_strategy("ia3")
@dataclass
class IA3(PeftStrategy):
    """Learned scaling vectors on keys, values and the FFN activation (peft ``IA3Config``).

    Train under ``bf16-mixed`` or ``32-true``: in ``bf16-true`` the updates to scales near 1.0 are below
    bfloat16's resolution and vanish (a warning says so at fit start).

    Args:
        target_modules: Layers whose output (or input, for feed-forward ones) is scaled. None: the
            architecture's keys, values and FFN output layer.
        feedforward_modules: Which of ``target_modules`` are scaled on their input. None: the FFN output layer.
    """

    target_modules: list[str] | None = None
    feedforward_modules: list[str] | None = None

    def peft_config(self, hf: nn.Module, task_type: str | None) -> Any:
        from peft import IA3Config

        kind = _model_type(hf)
        targets, feedforward = self.target_modules, self.feedforward_modules
        if targets is None:
            if kind not in IA3_TARGETS:
                raise StrategyError(
                    f"ia3 has no default target modules for model type {kind!r}: set target_modules and "
                    "feedforward_modules"
                )
            targets, default_ff = IA3_TARGETS[kind]
            feedforward = default_ff if feedforward is None else feedforward
        feedforward = [] if feedforward is None else list(feedforward)
        if not set(feedforward) <= set(targets):
            raise StrategyError(f"ia3 feedforward_modules {feedforward} must be a subset of target_modules {targets}")
        _check_targets("ia3", hf, list(targets))
        return IA3Config(task_type=task_type, target_modules=list(targets), feedforward_modules=feedforward)

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None) -> None:
        if precision is not None and "bf16-true" in str(precision):
            warnings.warn(
                "ia3 under bf16-true: updates to the scales (near 1.0) vanish in bfloat16 and they will not move; "
                "use precision bf16-mixed",
                stacklevel=2,
            )


@dataclass
class _VirtualTokens(PeftStrategy):
    is_prompt_learning: ClassVar[bool] = True
    num_virtual_tokens: int = 16

    def __post_init__(self) -> None:
        if self.num_virtual_tokens <= 0:
            raise StrategyError(
                f"{self.name} num_virtual_tokens={self.num_virtual_tokens}: use a positive length, e.g. 16"
            )

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None) -> None:
        if max_length is not None and self.num_virtual_tokens > max_length:
            raise StrategyError(
                f"{self.name} num_virtual_tokens={self.num_virtual_tokens} is longer than the data's "
                f"max_length={max_length}: use at most {max_length} virtual tokens"
            )


@register_strategy("prefix", "prefix_tuning", "ptuning_v2")
@dataclass
class PrefixTuning(_VirtualTokens):
    """Trainable key/value prefixes in every layer (peft ``PrefixTuningConfig``; P-tuning v2 without projection).

    Args:
        num_virtual_tokens: Prefix length per layer; at most the data's ``max_length`` (checked at fit start).
        projection: Reparameterise the prefixes through a two-layer MLP (Li & Liang). Off gives P-tuning v2's
            deep prompts. With it on, exports hold only the final prefixes (enough to predict; resume from
            Lightning checkpoints, which hold the MLP).
        projection_hidden_size: Hidden width of that MLP; None uses the model's hidden size.
    """

    projection: bool = False
    projection_hidden_size: int | None = None

    def prepare(self, model: nn.Module) -> nn.Module:
        # peft feeds prefixes as past_key_values; transformers 5.24 renamed that argument of BERT-style encoders
        # (to ``cache``), and peft then fails deep inside the first forward pass. Say so before training.
        encoder = backbone_of(model)
        if "past_key_values" not in inspect.signature(encoder.forward).parameters:
            import peft
            import transformers

            raise StrategyError(
                f"prefix: {type(encoder).__name__} in transformers {transformers.__version__} takes no "
                f"past_key_values, which peft {peft.__version__} needs for prefix tuning: install "
                "'transformers<5.24' (pet-lightning's pin) or use prompt / lora"
            )
        return super().prepare(model)

    def peft_config(self, hf: nn.Module, task_type: str | None) -> Any:
        from peft import PrefixTuningConfig

        kwargs: dict[str, Any] = {}
        if self.projection:
            kwargs["encoder_hidden_size"] = self.projection_hidden_size or hf.config.hidden_size
        return PrefixTuningConfig(
            task_type=task_type, num_virtual_tokens=self.num_virtual_tokens, prefix_projection=self.projection,
            **kwargs,
        )


@register_strategy("prompt", "prompt_tuning")
@dataclass
class PromptTuning(_VirtualTokens):
    """Trainable input embeddings prepended to the sequence (peft ``PromptTuningConfig``, random init).

    Args:
        num_virtual_tokens: Soft prompt length; the prompt plus ``max_length`` must fit the model's positions.
    """

    def peft_config(self, hf: nn.Module, task_type: str | None) -> Any:
        from peft import PromptTuningConfig

        return PromptTuningConfig(task_type=task_type, num_virtual_tokens=self.num_virtual_tokens)

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None) -> None:
        super().check_run(model, max_length=max_length, precision=precision)
        positions = getattr(unwrap(model).config, "max_position_embeddings", None)
        if max_length is not None and positions is not None and self.num_virtual_tokens + max_length > positions:
            raise StrategyError(
                f"prompt num_virtual_tokens={self.num_virtual_tokens} plus max_length={max_length} exceeds the "
                f"model's {positions} positions: shorten the prompt or max_length"
            )
