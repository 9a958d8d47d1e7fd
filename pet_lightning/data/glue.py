"""GLUE as a LightningDataModule: CoLA, SST-2, MRPC, STS-B, QQP, MNLI (matched + mismatched), QNLI, RTE, WNLI."""

from __future__ import annotations

from pet_lightning.data.base import TaskDataModule


class GlueDataModule(TaskDataModule):
    """A GLUE task from ``<data_dir>/glue/<TASK>/{train,dev,test}.tsv`` or the hub (``nyu-mll/glue``).

    :class:`~pet_lightning.data.base.TaskDataModule` takes every task and reads GLUE the same way; this class only
    refuses SuperGLUE tasks. See there for the arguments.
    """

    benchmark = "glue"
