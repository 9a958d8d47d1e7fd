"""Which parameters train: a registry of strategies by name.

>>> from pet_lightning.strategies import build_strategy
>>> strategy = build_strategy("layernorm", where="attention")
>>> report = strategy.apply(hf_model)
>>> report.trainable, report.total, report.percent, report.head
>>> plain = report.remove()  # the plain Hugging Face model again
"""

from pet_lightning.strategies.adapter import BottleneckAdapter
from pet_lightning.strategies.base import (
    STRATEGIES,
    Frozen,
    FullFineTuning,
    Strategy,
    StrategyError,
    StrategyReport,
    build_strategy,
    known_strategies,
    register_strategy,
    report_injected,
)
from pet_lightning.strategies.bitfit import BitFit
from pet_lightning.strategies.child_tuning import ChildTuningD
from pet_lightning.strategies.layernorm import LayerNormTuning
from pet_lightning.strategies.mixout import Mixout
from pet_lightning.strategies.module_wise import AttentionTuning, FeedForwardTuning
from pet_lightning.strategies.peft_methods import IA3, AdaLoRA, DoRA, LoRA, PeftConfigStrategy, VeRA
from pet_lightning.strategies.peft_prompts import PrefixTuning, PromptTuning
from pet_lightning.strategies.peft_strategy import PeftStrategy
from pet_lightning.strategies.random_subset import RandomSubset
from pet_lightning.strategies.top_k import TopKLayers

__all__ = [
    "STRATEGIES",
    "AdaLoRA",
    "AttentionTuning",
    "BitFit",
    "BottleneckAdapter",
    "ChildTuningD",
    "DoRA",
    "FeedForwardTuning",
    "Frozen",
    "FullFineTuning",
    "IA3",
    "LayerNormTuning",
    "LoRA",
    "Mixout",
    "PeftConfigStrategy",
    "PeftStrategy",
    "PrefixTuning",
    "PromptTuning",
    "RandomSubset",
    "Strategy",
    "StrategyError",
    "StrategyReport",
    "TopKLayers",
    "VeRA",
    "build_strategy",
    "known_strategies",
    "register_strategy",
    "report_injected",
]
