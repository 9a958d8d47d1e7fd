"""Task metrics as the GLUE and SuperGLUE papers report them, built from torchmetrics.

Every metric takes ``update(preds, target)`` where ``preds`` are class ids (classification, multiple choice)
or scores (regression); grouped metrics (MultiRC) also take ``group``. A :class:`torchmetrics.MetricCollection`
passes each metric only the keyword arguments its ``update`` accepts.
"""

from __future__ import annotations

from collections.abc import Callable

import torchmetrics
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from pet_lightning.tasks import TaskSpec

MetricFactory = Callable[[TaskSpec], Metric]


def _classes(spec: TaskSpec) -> int:
    return max(len(spec.label_values), 2)


METRICS: dict[str, MetricFactory] = {
    "accuracy": lambda spec: MulticlassAccuracy(num_classes=_classes(spec), average="micro"),
    "f1": lambda spec: BinaryF1Score(),
    "macro_f1": lambda spec: MulticlassF1Score(num_classes=_classes(spec), average="macro"),
    "mcc": lambda spec: MulticlassMatthewsCorrCoef(num_classes=_classes(spec)),
    "pearson": lambda spec: PearsonCorrCoef(),
    "spearman": lambda spec: SpearmanCorrCoef(),
}


def register_metric(name: str, factory: MetricFactory) -> None:
    METRICS[name] = factory


def build_metrics(spec: TaskSpec, prefix: str = "", postfix: str = "") -> MetricCollection:
    """The task's metrics, named ``<prefix><metric><postfix>`` (e.g. ``val/accuracy_mismatched``)."""
    missing = [name for name in spec.metrics if name not in METRICS]
    if missing:
        raise ValueError(f"task {spec.name} asks for unknown metrics {missing}: known are {sorted(METRICS)}")
    # compute_groups would merge states of metrics that look alike; our metrics differ, keep them apart.
    return MetricCollection(
        {name: METRICS[name](spec) for name in spec.metrics}, prefix=prefix, postfix=postfix, compute_groups=False
    )


__all__ = ["METRICS", "build_metrics", "register_metric", "torchmetrics"]
