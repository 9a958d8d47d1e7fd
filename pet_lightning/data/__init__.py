"""LightningDataModules for GLUE and SuperGLUE, sharing one base (load, split, process)."""

from pet_lightning.data.base import EncodedDataset, PaddingCollator, SplitPlan, TaskDataModule
from pet_lightning.data.glue import GlueDataModule
from pet_lightning.data.readers import DATA_DIR_ENV, DataError
from pet_lightning.data.superglue import SuperGlueDataModule

__all__ = [
    "DATA_DIR_ENV",
    "DataError",
    "EncodedDataset",
    "GlueDataModule",
    "PaddingCollator",
    "SplitPlan",
    "SuperGlueDataModule",
    "TaskDataModule",
]
