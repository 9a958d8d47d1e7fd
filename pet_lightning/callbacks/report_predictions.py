"""Per-example predictions on the reported split, kept next to a run's record (``predictions.csv``).

A sweep run tests its *selected* checkpoint once on the reported split; :class:`ReportPredictions` keeps what that
model predicted for each example, so that a report can resample examples (not only seeds) and pair two methods
example by example within a seed (:mod:`pet_lightning.reports.examples`).

The file is a CSV with a header, one row per reported example, sorted by subset and ``idx``:

* ``subset``: the metric-name suffix of the reported subset (``""`` for the first, ``_mismatched`` for MNLI's
  second): the record's ``report`` key ``accuracy_mismatched`` is computed over the rows of subset
  ``_mismatched``;
* ``idx``: the example's position in its official file (the id prediction files use);
* ``label`` and ``prediction``: class ids, or gold and predicted scores for regression (9 significant digits:
  float32 round-trips);
* ``group`` (grouped tasks: the MultiRC question, the ReCoRD query), and for ReCoRD ``score`` (the candidate's
  logit margin, which picks the query's answer), ``answer_f1`` and ``answer_em``.

Under DDP every process holds its shard of the test loader: the rows are gathered (``all_gather_object``: the
unrepeated sampler's shards are unequal) and global rank 0 writes the file.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from pet_lightning.data.contract import task_data

PREDICTIONS_FILE = "predictions.csv"
BASE_COLUMNS = ("subset", "idx", "label", "prediction")
GROUP_COLUMNS = ("group",)
RECORD_COLUMNS = ("score", "answer_f1", "answer_em")


class ReportPredictions(Callback):
    """Writes the test loop's per-example predictions to ``path`` (see the module docstring for the format).

    Needs ``test_step`` to return ``{"prediction", "logits"}`` (PETModule does) and batches with ``idx`` and
    ``label`` (every pet_lightning task's batches have them).

    Args:
        path: The CSV file to write at the end of the test epoch (its folder is created).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._rows: list[dict[str, Any]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = []

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if not isinstance(outputs, dict) or "prediction" not in outputs or "idx" not in batch:
            raise ValueError("ReportPredictions needs test_step to return {'prediction', 'logits'} and batches with "
                             "'idx' (PETModule and pet_lightning datamodules do)")
        suffixes = _suffixes(trainer)
        subset = suffixes[dataloader_idx] if dataloader_idx < len(suffixes) else f"_{dataloader_idx}"
        columns = {"idx": batch["idx"], "label": batch["label"], "prediction": outputs["prediction"]}
        if "group" in batch:
            columns["group"] = batch["group"]
        if "answer_f1" in batch:
            logits = outputs["logits"]
            # The margin of "is the answer" over "is not", as RecordScore ranks candidates.
            columns["score"] = logits[:, 1] - logits[:, 0] if logits.dim() == 2 and logits.shape[1] == 2 else \
                logits.flatten()
            columns["answer_f1"], columns["answer_em"] = batch["answer_f1"], batch["answer_em"]
        lists = {name: values.detach().flatten().cpu().tolist() for name, values in columns.items()}
        for position in range(len(lists["idx"])):
            self._rows.append({"subset": subset, **{name: values[position] for name, values in lists.items()}})

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = _gather(self._rows)
        self._rows = []
        if trainer.global_rank != 0:
            return
        write_predictions(self.path, rows, _suffixes(trainer))


def _suffixes(trainer: L.Trainer) -> list[str]:
    data = task_data(trainer)
    return list(data.eval_suffixes("test")) if data else [""]


def _gather(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return rows
    shards: list[list[dict[str, Any]]] = [[] for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather_object(shards, rows)
    return [row for shard in shards for row in shard]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.9g}"
    return str(value)


def write_predictions(path: Path, rows: list[dict[str, Any]], subsets: list[str]) -> Path:
    """Write ``rows`` (dicts with the module's columns) to ``path``: unique by (subset, idx), in subset then idx
    order, so the file does not depend on batch order or the number of processes."""
    order = {subset: position for position, subset in enumerate(subsets)}
    unique = {(row["subset"], row["idx"]): row for row in rows}
    ordered = sorted(unique.values(),
                     key=lambda row: (order.get(row["subset"], len(order)), row["subset"], row["idx"]))
    columns = list(BASE_COLUMNS)
    for extra in (*GROUP_COLUMNS, *RECORD_COLUMNS):
        if ordered and extra in ordered[0]:
            columns.append(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in ordered:
            writer.writerow([_text(row[column]) for column in columns])
    return path


__all__ = ["PREDICTIONS_FILE", "ReportPredictions", "write_predictions"]
