"""The ``peft`` strategy and its presets: LoRA (and its initialisations), DoRA, VeRA, AdaLoRA and IA3; prefix and
prompt tuning are in :mod:`pet_lightning.strategies.peft_prompts`.

Each preset only chooses a peft config class and its settings, with per-architecture defaults and one-line errors;
wrapping, freezing, counting, checkpoints and export are the one code path of
:class:`~pet_lightning.strategies.peft_strategy.PeftStrategy`, shared with ``build_strategy("peft", config=...)``.

>>> report = build_strategy("lora", r=8, alpha=16).apply(hf_model)
>>> report.model  # a peft ``PeftModel``; train it, export it with ``pet_lightning.export``
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from pet_lightning.strategies.base import Strategy, StrategyError, StrategyReport, register_strategy
from pet_lightning.strategies.peft_config import canonical_config, resolve_config_class
from pet_lightning.strategies.peft_strategy import PeftStrategy, _check_lora_plus, _model_type

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


# ------------------------------------------------------------------------------------------------ AdaLoRA's model
# Set on an AdaLoRA model by the callback that drives its rank budget (pet_lightning.callbacks.AdaLoraSchedule).
SCHEDULE_MARK = "_pet_lightning_budget_schedule"


def adalora_model(model: nn.Module) -> Any:
    """The peft ``AdaLoraModel`` inside ``model`` (a ``PeftModel``), or None."""
    from peft.tuners.adalora import AdaLoraModel

    return next((m for m in model.modules() if isinstance(m, AdaLoraModel)), None)


def uses_adalora(strategy: Strategy) -> bool:
    """Whether ``strategy`` builds an AdaLoRA model (the ``adalora`` preset, or ``peft`` with an AdaLoraConfig)."""
    from peft import AdaLoraConfig

    return isinstance(strategy, PeftStrategy) and issubclass(strategy.config_class(), AdaLoraConfig)


def check_adalora_schedule(strategy: str, model: nn.Module) -> None:
    """Refuse to fit an AdaLoRA model that no budget schedule drives: it would never prune its ranks."""
    tuner = adalora_model(model)
    if tuner is not None and not getattr(tuner, SCHEDULE_MARK, False):
        raise StrategyError(
            f"{strategy}: the trainer has no AdaLoraSchedule callback, so AdaLoRA would never prune its ranks: "
            "add pet_lightning.callbacks.AdaLoraSchedule() to the trainer's callbacks (the CLI adds it)"
        )


# ---------------------------------------------------------------------------------------------------- the methods
@register_strategy("peft")
@dataclass(frozen=True)
class PeftConfigStrategy(PeftStrategy):
    """Any peft method from its config: ``config`` is a peft config object or
    ``{"class_path": "peft.VeraConfig", "init_args": {...}}``.

    Args:
        config: The peft config. ``task_type`` and ``modules_to_save`` are set by the strategy (SEQ_CLS, the
            task head); ``target_modules`` must name layers of the encoder.
        lora_plus_ratio: LoRA+: the ``lora_B`` matrices train at this multiple of the learning rate (e.g. 16).
    """

    config: Any = field(default=None, metadata={"help": "the peft config: an object or {class_path, init_args}"})
    lora_plus_ratio: float | None = field(
        default=None, metadata={"help": "LoRA+: learning-rate multiple of the lora_B matrices; None = one rate"}
    )

    def __post_init__(self) -> None:
        if self.config is None:
            raise StrategyError("peft strategy needs a config: config: {class_path: peft.LoraConfig, init_args: {}}")
        # Stored canonical (class path + non-default settings): JSON-serialisable for checkpoints and sweeps.
        object.__setattr__(self, "config", canonical_config(self.config))
        _check_lora_plus(self.name, self.lora_plus_ratio)

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None,
                  applied: StrategyReport | None = None) -> None:
        check_adalora_schedule(self.name, model)

    def config_class(self) -> type:
        return resolve_config_class(self.config["class_path"])

    def config_spec(self, hf: nn.Module) -> dict[str, Any]:
        return dict(self.config["init_args"])




@register_strategy("lora")
@dataclass(frozen=True)
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

    r: int = field(default=8, metadata={"help": "rank of the update"})
    alpha: float = field(default=16, metadata={"help": "scaling numerator: the update is scaled by alpha / r"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the LoRA branch's input"})
    target_modules: list[str] | None = field(
        default=None, metadata={"help": "linear layers to adapt (name suffixes); None = query and value"}
    )
    init: str = field(default="kaiming", metadata={"help": "kaiming | gaussian | pissa | olora"})
    lora_plus_ratio: float | None = field(
        default=None, metadata={"help": "LoRA+: learning-rate multiple of the B matrices; None = one rate"}
    )

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
@dataclass(frozen=True)
class DoRA(LoRA):
    """DoRA (Liu et al. 2024): LoRA on the direction of each weight plus a trained magnitude per output feature
    (peft ``LoraConfig(use_dora=True)``). Settings as ``lora``; adds ``out_features`` parameters per layer."""

    def config_spec(self, hf: nn.Module) -> dict[str, Any]:
        return {**super().config_spec(hf), "use_dora": True}


@register_strategy("vera")
@dataclass(frozen=True)
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

    r: int = field(default=256, metadata={"help": "rank of the shared random matrices"})
    target_modules: list[str] | None = field(
        default=None, metadata={"help": "linear layers to adapt (name suffixes); None = query and value"}
    )
    dropout: float = field(default=0.0, metadata={"help": "dropout on the VeRA branch's input"})
    d_initial: float = field(default=0.1, metadata={"help": "initial value of the trained d vector"})
    projection_prng_key: int = field(default=0, metadata={"help": "seed of the shared random matrices"})

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
@dataclass(frozen=True)
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

    init_r: int = field(default=12, metadata={"help": "initial rank of every adapted layer"})
    target_r: int = field(default=8, metadata={"help": "average rank the budget is pruned to"})
    alpha: float = field(default=16, metadata={"help": "scaling numerator: the update is scaled by alpha / init_r"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the branch's input"})
    target_modules: list[str] | None = field(
        default=None, metadata={"help": "linear layers to adapt (name suffixes); None = query and value"}
    )
    tinit: int = field(default=0, metadata={"help": "optimizer steps before pruning starts"})
    tfinal: int = field(default=0, metadata={"help": "final optimizer steps with the ranks fixed"})
    delta_t: int = field(default=1, metadata={"help": "optimizer steps between two budget allocations"})
    beta1: float = field(default=0.85, metadata={"help": "EMA coefficient of the importance scores"})
    beta2: float = field(default=0.85, metadata={"help": "EMA coefficient of their uncertainty"})
    orth_reg_weight: float = field(default=0.5, metadata={"help": "weight of the orthogonality regulariser"})
    lora_plus_ratio: float | None = field(
        default=None, metadata={"help": "LoRA+: learning-rate multiple of the Q (lora_B) matrices; None = one rate"}
    )

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

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None,
                  applied: StrategyReport | None = None) -> None:
        check_adalora_schedule(self.name, model)


@register_strategy("ia3")
@dataclass(frozen=True)
class IA3(PeftStrategy):
    """Learned scaling vectors on keys, values and the FFN activation (peft ``IA3Config``).

    Train under ``bf16-mixed`` or ``32-true``: in ``bf16-true`` the updates to scales near 1.0 are below
    bfloat16's resolution and vanish (a warning says so at fit start).

    Args:
        target_modules: Layers whose output (or input, for feed-forward ones) is scaled. None: the
            architecture's keys, values and the FFN's second layer (scaled on its input: the activation).
        feedforward_modules: Which of ``target_modules`` are scaled on their input. None: the FFN's second layer.
    """

    target_modules: list[str] | None = field(
        default=None, metadata={"help": "layers to scale; None = keys, values and the FFN's second layer"}
    )
    feedforward_modules: list[str] | None = field(
        default=None, metadata={"help": "targets scaled on their input; None = the FFN's second layer"}
    )

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

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None,
                  applied: StrategyReport | None = None) -> None:
        if precision is not None and "bf16-true" in str(precision):
            warnings.warn(
                "ia3 under bf16-true: updates to the scales (near 1.0) vanish in bfloat16 and they will not move; "
                "use precision bf16-mixed",
                stacklevel=2,
            )
