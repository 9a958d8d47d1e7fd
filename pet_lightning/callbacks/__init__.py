"""Lightning callbacks: strategy freezing, the end-of-fit summary line, two-stage training."""

from pet_lightning.callbacks.freezing import StrategyFreezing
from pet_lightning.callbacks.predictions import SubmissionWriter
from pet_lightning.callbacks.summary import RunSummary
from pet_lightning.callbacks.two_stage import TwoStageTraining

__all__ = ["RunSummary", "StrategyFreezing", "SubmissionWriter", "TwoStageTraining"]
