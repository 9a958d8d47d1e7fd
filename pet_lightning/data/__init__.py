"""LightningDataModules for GLUE and SuperGLUE.

:class:`TaskDataModule` is the one entry point: ``task`` alone decides the benchmark (``rte`` is GLUE's tsv RTE,
``superglue-rte`` SuperGLUE's jsonl RTE). :class:`GlueDataModule` and :class:`SuperGlueDataModule` are the same
module restricted to one benchmark (inside ``SuperGlueDataModule``, ``rte`` means ``superglue-rte``).
"""

from pet_lightning.data.base import SplitPlan, TaskDataModule
from pet_lightning.data.encoding import EncodedDataset, PaddingCollator
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
