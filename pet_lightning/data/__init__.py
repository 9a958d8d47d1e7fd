"""LightningDataModules for GLUE and SuperGLUE.

:class:`TaskDataModule` is the one entry point: ``task`` alone decides the benchmark (``rte`` is GLUE's tsv RTE,
``superglue-rte`` SuperGLUE's jsonl RTE). :class:`GlueDataModule` and :class:`SuperGlueDataModule` are the same
module restricted to one benchmark (inside ``SuperGlueDataModule``, ``rte`` means ``superglue-rte``).

The pipeline's steps are importable on their own: a task's source (:mod:`~pet_lightning.data.source`), its split
plan (:func:`make_plan` with :class:`SplitSettings`) and the encoding (:mod:`~pet_lightning.data.encoding`).
:class:`TaskData` is what the model and the callbacks read from a data module.
"""

from pet_lightning.data.base import TaskDataModule
from pet_lightning.data.contract import TaskData, task_data
from pet_lightning.data.encoding import EncodedDataset, PaddingCollator
from pet_lightning.data.glue import GlueDataModule
from pet_lightning.data.protocol import SplitPlan, SplitSettings, make_plan
from pet_lightning.data.readers import DATA_DIR_ENV, DataError
from pet_lightning.data.source import ExamplesSource, TaskSource, task_source
from pet_lightning.data.superglue import SuperGlueDataModule

__all__ = [
    "DATA_DIR_ENV",
    "DataError",
    "EncodedDataset",
    "ExamplesSource",
    "GlueDataModule",
    "PaddingCollator",
    "SplitPlan",
    "SplitSettings",
    "SuperGlueDataModule",
    "TaskData",
    "TaskDataModule",
    "TaskSource",
    "make_plan",
    "task_data",
    "task_source",
]
