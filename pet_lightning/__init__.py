"""pet-lightning: parameter-efficient tuning of pretrained language models with PyTorch Lightning."""

from pet_lightning.backbones import DEFAULT_BACKBONE, load_backbone, resolve_backbone
from pet_lightning.callbacks import RunSummary, StrategyFreezing
from pet_lightning.data import GlueDataModule, TaskDataModule
from pet_lightning.module import PETModule
from pet_lightning.strategies import build_strategy
from pet_lightning.tasks import TASKS, TaskSpec, get_task

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BACKBONE",
    "TASKS",
    "GlueDataModule",
    "PETModule",
    "RunSummary",
    "StrategyFreezing",
    "TaskDataModule",
    "TaskSpec",
    "build_strategy",
    "get_task",
    "load_backbone",
    "resolve_backbone",
]
