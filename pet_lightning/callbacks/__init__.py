"""Lightning callbacks: strategy freezing, what some strategies need to train (AdaLoRA's schedule, Child-Tuning's
Fisher scores), the end-of-fit summary line, two-stage training, stage-aware selection."""

from pet_lightning.callbacks.adalora import AdaLoraSchedule
from pet_lightning.callbacks.child_tuning import ChildTuningFisher
from pet_lightning.callbacks.collapse import CollapseGuard
from pet_lightning.callbacks.distance import PretrainedDistance
from pet_lightning.callbacks.features import HeadFeatures
from pet_lightning.callbacks.freezing import StrategyFreezing
from pet_lightning.callbacks.predictions import SubmissionWriter
from pet_lightning.callbacks.probe import ExactLinearProbe
from pet_lightning.callbacks.report_predictions import ReportPredictions
from pet_lightning.callbacks.resume import ResumeCheckpoints
from pet_lightning.callbacks.schedule import LearningRateSchedule
from pet_lightning.callbacks.selection import SelectionCheckpoint, SelectionEarlyStopping, SelectionGate
from pet_lightning.callbacks.summary import RunSummary
from pet_lightning.callbacks.two_stage import TwoStageTraining

__all__ = [
    "AdaLoraSchedule",
    "ChildTuningFisher",
    "CollapseGuard",
    "ExactLinearProbe",
    "HeadFeatures",
    "LearningRateSchedule",
    "PretrainedDistance",
    "ReportPredictions",
    "ResumeCheckpoints",
    "RunSummary",
    "SelectionCheckpoint",
    "SelectionEarlyStopping",
    "SelectionGate",
    "StrategyFreezing",
    "SubmissionWriter",
    "TwoStageTraining",
]
