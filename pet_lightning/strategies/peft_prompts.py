"""Prompt-learning presets of the ``peft`` strategy: prefix tuning (P-tuning v2) and prompt tuning.

Both prepend virtual tokens, so both check at fit start that the data's ``max_length`` and the model's position
table leave room for them. Wrapping, freezing and counting are :class:`~pet_lightning.strategies.peft_strategy.
PeftStrategy`'s.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from pet_lightning.strategies.base import StrategyError, StrategyReport, backbone_of, register_strategy, unwrap
from pet_lightning.strategies.peft_strategy import PeftStrategy


@dataclass(frozen=True)
class _VirtualTokens(PeftStrategy):
    num_virtual_tokens: int = field(default=16, metadata={"help": "number of virtual tokens"})

    def __post_init__(self) -> None:
        if self.num_virtual_tokens <= 0:
            raise StrategyError(
                f"{self.name} num_virtual_tokens={self.num_virtual_tokens}: use a positive length, e.g. 16"
            )

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None,
                  applied: StrategyReport | None = None) -> None:
        if max_length is not None and self.num_virtual_tokens > max_length:
            raise StrategyError(
                f"{self.name} num_virtual_tokens={self.num_virtual_tokens} is longer than the data's "
                f"max_length={max_length}: use at most {max_length} virtual tokens"
            )


@register_strategy("prefix", "prefix_tuning", "ptuning_v2")
@dataclass(frozen=True)
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

    projection: bool = field(default=False, metadata={"help": "reparameterise the prefixes through an MLP"})
    projection_hidden_size: int | None = field(
        default=None, metadata={"help": "hidden width of that MLP; None = the model's hidden size"}
    )
    init_std: float | None = field(
        default=None, metadata={"help": "re-draw the prefix embedding from N(0, init_std); None = peft's init"}
    )

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

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None,
                  applied: StrategyReport | None = None) -> None:
        super().check_run(model, max_length=max_length, precision=precision, applied=applied)
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
@dataclass(frozen=True)
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

    def check_run(self, model: nn.Module, *, max_length: int | None = None, precision: str | None = None,
                  applied: StrategyReport | None = None) -> None:
        super().check_run(model, max_length=max_length, precision=precision, applied=applied)
        positions = getattr(unwrap(model).config, "max_position_embeddings", None)
        if max_length is not None and positions is not None and self.num_virtual_tokens + max_length > positions:
            raise StrategyError(
                f"prompt num_virtual_tokens={self.num_virtual_tokens} plus max_length={max_length} exceeds the "
                f"model's {positions} positions: shorten the prompt or max_length"
            )
