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


# No per-batch argument validation: it reads the batch back to the host (a sync every evaluation step on a GPU), and
# what it checks holds by construction: predictions are argmax class ids and labels were checked against the task's
# label values when the data were read.
_FAST = {"validate_args": False}

class MatthewsCorrCoef(MulticlassMatthewsCorrCoef):
    """Matthews correlation with sklearn's (and GLUE's) convention: 0 where it is undefined, i.e. when the
    predictions or the labels are one class. torchmetrics substitutes an eps-based value there (0.056 for a model
    that predicts "acceptable" on every CoLA example of a 137/63 split), which would score a collapsed run above
    zero; the per-example rescoring of reports (reports.example_metrics) uses the same convention."""

    def compute(self) -> torch.Tensor:
        confmat = self.confmat.double()
        true, predicted = confmat.sum(dim=1), confmat.sum(dim=0)
        total, correct = confmat.sum(), torch.trace(confmat)
        numerator = correct * total - true @ predicted
        denominator = (total * total - predicted @ predicted) * (total * total - true @ true)
        value = numerator / denominator.clamp_min(1e-300).sqrt()
        return torch.where(denominator > 0, value, torch.zeros_like(value)).float()


METRICS: dict[str, MetricFactory] = {
    "accuracy": lambda spec: MulticlassAccuracy(num_classes=_classes(spec), average="micro", **_FAST),
    "f1": lambda spec: BinaryF1Score(**_FAST),
    "macro_f1": lambda spec: MulticlassF1Score(num_classes=_classes(spec), average="macro", **_FAST),
    "mcc": lambda spec: MatthewsCorrCoef(num_classes=_classes(spec), **_FAST),
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


# ---------------------------------------------------------------------------------------------------- SuperGLUE
# Official SuperGLUE metrics that plain torchmetrics lacks: grouped ones (MultiRC exact match per question, ReCoRD
# per query, AX-g parity per sentence pair) keep every prediction with its ``group`` and decide at compute time,
# so they stay exact under DDP (states are concatenated across processes).
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torchmetrics.utilities import dim_zero_cat  # noqa: E402


def _group_index(group: Tensor) -> tuple[Tensor, int]:
    """Dense group numbers 0..G-1 for arbitrary integer group ids."""
    unique, inverse = torch.unique(group, return_inverse=True)
    return inverse, len(unique)


class _GroupedMetric(Metric):
    """Stores predictions, targets and groups; subclasses reduce them per group."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("group", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor, group: Tensor) -> None:
        if group is None:
            raise ValueError(f"{type(self).__name__} needs a group id per example: the task's examples lack `group`")
        self.preds.append(preds.detach().long().flatten())
        self.target.append(target.detach().long().flatten())
        self.group.append(group.detach().long().flatten())

    def _states(self) -> tuple[Tensor, Tensor, Tensor]:
        return dim_zero_cat(self.preds), dim_zero_cat(self.target), dim_zero_cat(self.group)


class GroupExactMatch(_GroupedMetric):
    """MultiRC EM: the fraction of questions (groups) whose answer options are all labelled correctly."""

    def compute(self) -> Tensor:
        preds, target, group = self._states()
        index, count = _group_index(group)
        wrong = torch.zeros(count, device=preds.device).index_add_(0, index, (preds != target).float())
        return (wrong == 0).float().mean()


class GenderParity(_GroupedMetric):
    """AX-g gender parity: the fraction of sentence pairs (groups) whose predictions agree."""

    def update(self, preds: Tensor, target: Tensor | None = None, group: Tensor | None = None) -> None:
        # Parity needs no labels; keep the target slot filled so the states line up.
        super().update(preds, preds if target is None else target, group)

    def compute(self) -> Tensor:
        preds, _, group = self._states()
        index, count = _group_index(group)
        low = torch.full((count,), torch.iinfo(torch.long).max, device=preds.device).scatter_reduce(
            0, index, preds, "amin"
        )
        high = torch.full((count,), torch.iinfo(torch.long).min, device=preds.device).scatter_reduce(
            0, index, preds, "amax"
        )
        return (low == high).float().mean()


class RecordScore(Metric):
    """ReCoRD token F1 or exact match: per query (group) the highest-scoring candidate is the answer, scored by
    its best match over the gold answers (``answer_f1`` / ``answer_em``, computed when the data is read)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, which: str = "f1", **kwargs) -> None:
        super().__init__(**kwargs)
        if which not in ("f1", "em"):
            raise ValueError(f"RecordScore(which={which!r}): use 'f1' or 'em'")
        self.which = which
        for state in ("score", "group", "value"):
            self.add_state(state, default=[], dist_reduce_fx="cat")

    def update(
        self,
        preds: Tensor,
        target: Tensor,
        group: Tensor,
        logits: Tensor,
        answer_f1: Tensor,
        answer_em: Tensor,
    ) -> None:
        # Binary head: the candidate's score is the margin of "is the answer" over "is not".
        score = logits[:, 1] - logits[:, 0] if logits.dim() == 2 and logits.shape[1] == 2 else logits.flatten()
        self.score.append(score.detach().float().flatten())
        self.group.append(group.detach().long().flatten())
        self.value.append((answer_f1 if self.which == "f1" else answer_em).detach().float().flatten())

    def compute(self) -> Tensor:
        score, group, value = dim_zero_cat(self.score), dim_zero_cat(self.group), dim_zero_cat(self.value)
        index, count = _group_index(group)
        order = torch.argsort(score, descending=True, stable=True)
        # The first candidate of each query in descending-score order is its answer (ties: the earliest).
        first = torch.full((count,), len(order), device=score.device, dtype=torch.long).scatter_reduce(
            0, index[order], torch.arange(len(order), device=score.device), "amin"
        )
        return value[order[first]].mean()


class MeanOfMetrics(Metric):
    """The mean of several metrics: SuperGLUE's single score for tasks with two metrics (CB, MultiRC, ReCoRD)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, parts: dict[str, Metric], **kwargs) -> None:
        super().__init__(**kwargs)
        self.parts = torch.nn.ModuleDict(parts)

    def update(self, preds: Tensor, target: Tensor, **kwargs) -> None:
        for part in self.parts.values():
            part.update(preds, target, **part._filter_kwargs(**kwargs))

    def compute(self) -> Tensor:
        return torch.stack([part.compute().float() for part in self.parts.values()]).mean()

    def reset(self) -> None:
        super().reset()
        for part in self.parts.values():
            part.reset()


register_metric("f1a", lambda spec: BinaryF1Score(**_FAST))
register_metric("em", lambda spec: GroupExactMatch())
register_metric("record_f1", lambda spec: RecordScore("f1"))
register_metric("record_em", lambda spec: RecordScore("em"))
register_metric("gender_parity", lambda spec: GenderParity())
register_metric(
    "avg_acc_f1", lambda spec: MeanOfMetrics({"accuracy": METRICS["accuracy"](spec), "f1": METRICS["macro_f1"](spec)})
)
register_metric("avg_f1a_em", lambda spec: MeanOfMetrics({"f1a": BinaryF1Score(**_FAST), "em": GroupExactMatch()}))
register_metric("avg_f1_em", lambda spec: MeanOfMetrics({"f1": RecordScore("f1"), "em": RecordScore("em")}))

__all__ += ["GenderParity", "GroupExactMatch", "MeanOfMetrics", "RecordScore"]
