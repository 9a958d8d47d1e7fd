"""Which parameters train: a registry of strategies by name.

>>> from pet_lightning.strategies import build_strategy
>>> strategy = build_strategy("layernorm", where="attention")
>>> report = strategy.apply(hf_model)
>>> report.trainable, report.total, report.percent, report.head
"""

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
)

__all__ = [
    "STRATEGIES",
    "Frozen",
    "FullFineTuning",
    "Strategy",
    "StrategyError",
    "StrategyReport",
    "build_strategy",
    "known_strategies",
    "register_strategy",
]
