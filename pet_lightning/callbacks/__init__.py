"""Lightning callbacks: strategy freezing, the end-of-fit summary line, two-stage training."""

from pet_lightning.callbacks.freezing import StrategyFreezing
from pet_lightning.callbacks.summary import RunSummary

__all__ = ["RunSummary", "StrategyFreezing"]
