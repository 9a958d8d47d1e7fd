"""Presets of the ``peft`` strategy: LoRA (and its initialisations), DoRA, VeRA, AdaLoRA, IA3, prefix and prompt
tuning.

Each preset only chooses a peft config class and its settings, with per-architecture defaults and one-line errors;
wrapping, freezing, counting, checkpoints and export are the one code path of
:class:`~pet_lightning.strategies.peft_strategy.PeftStrategy`, shared with ``build_strategy("peft", config=...)``.

>>> report = build_strategy("lora", r=8, alpha=16).apply(hf_model)
>>> report.model  # a peft ``PeftModel``; train it, export it with ``pet_lightning.export``
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any

from torch import nn

from pet_lightning.strategies.base import StrategyError, backbone_of, register_strategy, unwrap
from pet_lightning.strategies.peft_strategy import (  # noqa: F401 - _report and head_module_names are shared API
    PeftStrategy,
    _check_lora_plus,
    _model_type,
    _report,
    head_module_names,
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
# IA3 (Liu et al. 2022) scales keys, values and the FFN's intermediate activation, i.e. the input of the FFN's
# second layer. On BERT-style encoders that layer is `layer.N.output.dense`; a plain `output.dense` suffix would
# also match the attention output projection `layer.N.attention.output.dense`, so these are full-match patterns.
_BERT_FFN_OUT = r".*\.layer\.\d+\.output\.dense"
IA3_TARGETS: dict[str, tuple[str | list[str], str | list[str]]] = {
    **{
        family: (r".*\.layer\.\d+\.(attention\.self\.(key|value)|output\.dense)", _BERT_FFN_OUT)
        for family in ("bert", "roberta", "xlm-roberta", "electra")
    },
    "deberta-v2": (r".*\.layer\.\d+\.(attention\.self\.(key_proj|value_proj)|output\.dense)", _BERT_FFN_OUT),
    "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
}
LORA_INITS: dict[str, bool | str] = {"kaiming": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}


def default_targets(strategy: str, hf: nn.Module, given: list[str] | None) -> list[str]:
    if given is not None:
        return list(given)
    kind = _model_type(hf)
    if kind not in LORA_TARGETS:
        raise StrategyError(
            f"{strategy} has no default target modules for model type {kind!r}: set target_modules, "
            f"e.g. [query, value]"
        )
    return LORA_TARGETS[kind]


def _check_dropout(name: str, dropout: float) -> None:
    if not 0 <= dropout < 1:
        raise StrategyError(f"{name} dropout={dropout}: use a probability in [0, 1)")


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
        init: ``kaiming`` (A Kaiming-uniform, B zero: the LoRA paper), ``gaussian`` (A Gaussian), ``pissa``
            (A, B from the top singular vectors of W, which keeps the residual: PiSSA) or ``olora`` (QR of W).
            PiSSA and OLoRA change the frozen weights to the residual; checkpoints rebuild it from the backbone.
        lora_plus_ratio: LoRA+: the B matrices get their own parameter group at this multiple of the learning
            rate of the A matrices (the paper suggests 16). None: one learning rate.
    """

    r: int = 8
    alpha: float = 16
    dropout: float = 0.1
    target_modules: list[str] | None = None
    init: str = "kaiming"
    lora_plus_ratio: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:  # 4.5 would fail deep in peft
            raise StrategyError(f"{self.name} r={self.r}: the rank must be a positive integer, e.g. r: 8")
        if self.alpha <= 0:
            raise StrategyError(f"{self.name} alpha={self.alpha}: use a positive scaling, e.g. alpha: 16")
        _check_dropout(self.name, self.dropout)
        if self.init not in LORA_INITS:
            raise StrategyError(f"{self.name} init={self.init!r}: choose one of {', '.join(LORA_INITS)}")
        _check_lora_plus(self.name, self.lora_plus_ratio)

    def targets(self, hf: nn.Module) -> list[str]:
        return default_targets(self.name, hf, self.target_modules)

    def config_class(self) -> type:
        from peft import LoraConfig

        return LoraConfig

    def config_spec(self, hf: nn.Module) -> dict[str, Any]:
        return {
            "r": self.r, "lora_alpha": self.alpha, "lora_dropout": self.dropout, "target_modules": self.targets(hf),
            "init_lora_weights": LORA_INITS[self.init],
        }


@register_strategy("dora")
@dataclass
class DoRA(LoRA):
    """DoRA (Liu et al. 2024): LoRA on the direction of each weight plus a trained magnitude per output feature
    (peft ``LoraConfig(use_dora=True)``). Settings as ``lora``; adds ``out_features`` parameters per layer."""

    def config_spec(self, hf: nn.Module) -> dict[str, Any]:
        return {**super().config_spec(hf), "use_dora": True}


@register_strategy("vera")
@dataclass
class VeRA(PeftStrategy):
    """VeRA (Kopiczko et al. 2024): frozen random low-rank matrices shared by all layers, scaled by two trained
    vectors per layer (``r`` + ``out_features`` parameters; peft ``VeraConfig``).

    The shared matrices come from ``projection_prng_key``; checkpoints rebuild them from it, exports hold them.

    Args:
        r: Rank of the shared random matrices (VeRA uses far larger ranks than LoRA: 256 to 1024).
        target_modules: As ``lora``; all targeted layers share the matrices.
        dropout: Dropout on the VeRA branch's input.
        d_initial: Initial value of the trained ``d`` vector.
        projection_prng_key: Seed of the shared random matrices.
    """

    r: int = 256
    target_modules: list[str] | None = None
    dropout: float = 0.0
    d_initial: float = 0.1
    projection_prng_key: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise StrategyError(f"vera r={self.r}: the rank must be a positive integer, e.g. r: 256")
        _check_dropout("vera", self.dropout)

    def config_class(self) -> type:
        from peft import VeraConfig

        return VeraConfig

    def config_spec(self, hf: nn.Module) -> dict[str, Any]:
        return {
            "r": self.r, "target_modules": default_targets("vera", hf, self.target_modules),
            "vera_dropout": self.dropout, "d_initial": self.d_initial, "projection_prng_key": self.projection_prng_key,
            "save_projection": True,
        }


@register_strategy("adalora")
@dataclass
class AdaLoRA(PeftStrategy):
    """AdaLoRA (Zhang et al. 2023): SVD-shaped LoRA ``P diag(E) Q`` whose rank budget is pruned from ``init_r`` to
    ``target_r`` per layer on average by importance (peft ``AdaLoraConfig``).

    Trains only with the :class:`~pet_lightning.callbacks.AdaLoraSchedule` callback (the CLI adds it): it sets the
    total step count from the trainer, calls ``update_and_allocate`` after every optimizer step and adds the
    orthogonal regulariser's gradient.

    Args:
        init_r: Initial rank of every adapted layer.
        target_r: Average rank the budget is pruned to.
        alpha: Scaling numerator (the update is scaled by ``alpha / init_r``).
        dropout: Dropout on the branch's input.
        target_modules: As ``lora``.
        tinit: Optimizer steps before pruning starts.
        tfinal: Optimizer steps at the end with the final ranks fixed.
        delta_t: Steps between two budget allocations.
        beta1: EMA coefficient of the importance (sensitivity) scores.
        beta2: EMA coefficient of their uncertainty.
        orth_reg_weight: Weight of the orthogonality regulariser on P and Q.
        lora_plus_ratio: As ``lora`` (the Q, i.e. ``lora_B``, matrices).
    """

    init_r: int = 12
    target_r: int = 8
    alpha: float = 16
    dropout: float = 0.1
    target_modules: list[str] | None = None
    tinit: int = 0
    tfinal: int = 0
    delta_t: int = 1
    beta1: float = 0.85
    beta2: float = 0.85
    orth_reg_weight: float = 0.5
    lora_plus_ratio: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.target_r <= self.init_r:
            raise StrategyError(
                f"adalora target_r={self.target_r}, init_r={self.init_r}: use 0 < target_r <= init_r, e.g. 8 and 12"
            )
        if self.tinit < 0 or self.tfinal < 0 or self.delta_t <= 0:
            raise StrategyError(
                f"adalora tinit={self.tinit}, tfinal={self.tfinal}, delta_t={self.delta_t}: use tinit, tfinal >= 0 "
                "and delta_t >= 1 (optimizer steps)"
            )
        _check_dropout("adalora", self.dropout)
        _check_lora_plus("adalora", self.lora_plus_ratio)

    def config_class(self) -> type:
        from peft import AdaLoraConfig

        return AdaLoraConfig

    def config_spec(self, hf: nn.Module) -> dict[str, Any]:
        return {
            "init_r": self.init_r, "target_r": self.target_r, "lora_alpha": self.alpha, "lora_dropout": self.dropout,
            "target_modules": default_targets("adalora", hf, self.target_modules), "tinit": self.tinit,
            "tfinal": self.tfinal, "deltaT": self.delta_t, "beta1": self.beta1, "beta2": self.beta2,
            "orth_reg_weight": self.orth_reg_weight,
        }


@register_strategy("ia3")
@dataclass
class IA3(PeftStrategy):
    """Learned scaling vectors on keys, values and the FFN activation (peft ``IA3Config``).

    Train under ``bf16-mixed`` or ``32-true``: in ``bf16-true`` the updates to scales near 1.0 are below
    bfloat16's resolution and vanish (a warning says so at fit start).

    Args:
        target_modules: Layers whose output (or input, for feed-forward ones) is scaled. None: the
            architecture's keys, values and the FFN's second layer (scaled on its input: the activation).
        feedforward_modules: Which of ``target_modules`` are scaled on their input. None: the FFN's second layer.
    """

    target_modules: list[str] | None = None
    feedforward_modules: list[str] | None = None

    def config_class(self) -> type:
        from peft import IA3Config

        return IA3Config

    def config_spec(self, hf: nn.Module) -> dict[str, Any]:
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
        feedforward = [] if feedforward is None else feedforward
        if isinstance(targets, list) and not set(feedforward) <= set(targets):
            raise StrategyError(f"ia3 feedforward_modules {feedforward} must be a subset of target_modules {targets}")
        return {"target_modules": targets, "feedforward_modules": feedforward}

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None) -> None:
        if precision is not None and "bf16-true" in str(precision):
            warnings.warn(
                "ia3 under bf16-true: updates to the scales (near 1.0) vanish in bfloat16 and they will not move; "
                "use precision bf16-mixed",
                stacklevel=2,
            )


@dataclass
class _VirtualTokens(PeftStrategy):
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
        init_std: Re-draw the prefix embedding from N(0, init_std) (the EH-FT code's ``torch.randn(...) * 0.01``,
            ``SAT/model/finetune/prompt_tuning.py:20-23``); None keeps peft's ``nn.Embedding`` init, N(0, 1).

    Hugging Face encoders shift position ids by the prefix, so prefix plus ``max_length`` must fit the position
    table (checked at fit start; RoBERTa: 495 tokens behind 17, the length the EH-FT code cuts inputs to).
    """

    projection: bool = False
    projection_hidden_size: int | None = None
    init_std: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init_std is not None and not self.init_std > 0:
            raise StrategyError(f"prefix init_std={self.init_std}: use a positive standard deviation (0.01) or None")

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
        wrapped = super().prepare(model)
        if self.init_std is not None:
            for module in wrapped.modules():
                if type(module).__name__ == "PrefixEncoder":
                    nn.init.normal_(module.embedding.weight, mean=0.0, std=self.init_std)
        return wrapped

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None) -> None:
        super().check_run(model, max_length=max_length, precision=precision)
        hf = unwrap(model)
        positions = getattr(hf.config, "max_position_embeddings", None)
        # RoBERTa-style embeddings number positions from padding_idx + 1; BERT's from 0.
        padding_idx = getattr(getattr(backbone_of(hf), "embeddings", None), "padding_idx", None)
        needed = (0 if padding_idx is None else padding_idx + 1) + self.num_virtual_tokens + (max_length or 0)
        if max_length is not None and positions is not None and needed > positions:
            raise StrategyError(
                f"prefix num_virtual_tokens={self.num_virtual_tokens} shifts position ids past the model's "
                f"{positions} positions at max_length={max_length}: use max_length <= "
                f"{positions - needed + max_length}"
            )

    def config_class(self) -> type:
        from peft import PrefixTuningConfig

        return PrefixTuningConfig

    def config_spec(self, hf: nn.Module) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "num_virtual_tokens": self.num_virtual_tokens, "prefix_projection": self.projection,
        }
        if self.projection:
            settings["encoder_hidden_size"] = self.projection_hidden_size or hf.config.hidden_size
        return settings


@register_strategy("prompt", "prompt_tuning")
@dataclass
class PromptTuning(_VirtualTokens):
    """Trainable input embeddings prepended to the sequence (peft ``PromptTuningConfig``, random init).

    Args:
        num_virtual_tokens: Soft prompt length; the prompt plus ``max_length`` must fit the model's positions.
    """

    def config_class(self) -> type:
        from peft import PromptTuningConfig

        return PromptTuningConfig

    def config_spec(self, hf: nn.Module) -> dict[str, Any]:
        return {"num_virtual_tokens": self.num_virtual_tokens}

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None) -> None:
        super().check_run(model, max_length=max_length, precision=precision)
        positions = getattr(unwrap(model).config, "max_position_embeddings", None)
        if max_length is not None and positions is not None and self.num_virtual_tokens + max_length > positions:
            raise StrategyError(
                f"prompt num_virtual_tokens={self.num_virtual_tokens} plus max_length={max_length} exceeds the "
                f"model's {positions} positions: shorten the prompt or max_length"
            )
