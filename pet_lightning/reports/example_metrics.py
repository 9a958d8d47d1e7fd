"""Metrics recomputed from a run's saved predictions (numpy columns), as :mod:`pet_lightning.metrics` defines them:
the per-example tools of :mod:`pet_lightning.reports.examples` rescore resampled examples with these. Fractions,
as records store them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Columns = dict[str, np.ndarray]



def _accuracy(c: Columns) -> float:
    return float(np.mean(c["prediction"] == c["label"]))


def _binary_f1(c: Columns) -> float:
    pred, label = c["prediction"] == 1, c["label"] == 1
    tp, fp, fn = np.sum(pred & label), np.sum(pred & ~label), np.sum(~pred & label)
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def _macro_f1(c: Columns) -> float:
    # Classes absent from both labels and predictions are left out of the mean (torchmetrics and sklearn agree).
    scores = []
    for cls in np.union1d(c["label"], c["prediction"]):
        pred, label = c["prediction"] == cls, c["label"] == cls
        tp, fp, fn = np.sum(pred & label), np.sum(pred & ~label), np.sum(~pred & label)
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def _mcc(c: Columns) -> float:
    classes = np.union1d(c["label"], c["prediction"])
    label = np.searchsorted(classes, c["label"])
    pred = np.searchsorted(classes, c["prediction"])
    matrix = np.zeros((len(classes), len(classes)))
    np.add.at(matrix, (label, pred), 1)
    n, correct = matrix.sum(), np.trace(matrix)
    true, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    denominator = math.sqrt((n * n - predicted @ predicted) * (n * n - true @ true))
    return float((correct * n - true @ predicted) / denominator) if denominator else 0.0


def _pearson(c: Columns) -> float:
    x, y = c["prediction"], c["label"]
    if np.std(x) == 0 or np.std(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), as ``scipy.stats.rankdata`` without its overhead:
    a bootstrap ranks every resample."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    dense = np.cumsum(starts)
    bounds = np.r_[np.flatnonzero(starts), len(values)]
    ranks = np.empty(len(values))
    ranks[order] = 0.5 * (bounds[dense] + bounds[dense - 1] + 1)
    return ranks


def _spearman(c: Columns) -> float:
    return _pearson({"prediction": _ranks(c["prediction"]), "label": _ranks(c["label"])})


def _group_exact_match(c: Columns) -> float:
    _, index = np.unique(c["group"], return_inverse=True)
    wrong = np.bincount(index, weights=(c["prediction"] != c["label"]).astype(float))
    return float(np.mean(wrong == 0))


def _record(which: str) -> Callable[[Columns], float]:
    def score(c: Columns) -> float:
        # Per query the highest-scoring candidate answers (ties: the earliest), as RecordScore decides.
        order = np.lexsort((np.arange(len(c["score"])), -c["score"]))
        _, first = np.unique(c["group"][order], return_index=True)
        return float(np.mean(c[f"answer_{which}"][order[first]]))
    return score


METRIC_FUNCTIONS: dict[str, Callable[[Columns], float]] = {
    "accuracy": _accuracy,
    "f1": _binary_f1,
    "f1a": _binary_f1,
    "macro_f1": _macro_f1,
    "mcc": _mcc,
    "pearson": _pearson,
    "spearman": _spearman,
    "em": _group_exact_match,
    "record_f1": _record("f1"),
    "record_em": _record("em"),
}
METRIC_FUNCTIONS["avg_acc_f1"] = lambda c: (_accuracy(c) + _macro_f1(c)) / 2
METRIC_FUNCTIONS["avg_f1a_em"] = lambda c: (_binary_f1(c) + _group_exact_match(c)) / 2
METRIC_FUNCTIONS["avg_f1_em"] = lambda c: (METRIC_FUNCTIONS["record_f1"](c) + METRIC_FUNCTIONS["record_em"](c)) / 2


def metric_subset(key: str, subsets: Sequence[str]) -> tuple[str, str]:
    """A record ``report`` key -> (base metric, subset): ``accuracy_mismatched`` -> (``accuracy``,
    ``_mismatched``) when the file has that subset; else the key on the first subset (``""``)."""
    for subset in sorted((s for s in subsets if s), key=len, reverse=True):
        if key.endswith(subset) and key[: -len(subset)] in METRIC_FUNCTIONS:
            return key[: -len(subset)], subset
    return key, ""


def check_recomputable(base: str, key: str) -> None:
    """Raise a one-line ValueError when the metric `key` (base `base`) has no recomputation here."""
    if base not in METRIC_FUNCTIONS:
        raise ValueError(f"metric {key!r} cannot be recomputed from predictions: use one of "
                         f"{', '.join(sorted(METRIC_FUNCTIONS))}")


def score(predictions: dict[str, Columns], key: str) -> float:
    """The metric ``key`` (a record ``report`` key such as ``spearman`` or ``accuracy_mismatched``) recomputed from
    a run's predictions; a fraction, as the record stores it."""
    base, subset = metric_subset(key, list(predictions))
    check_recomputable(base, key)
    return METRIC_FUNCTIONS[base](predictions[subset])
