"""Leaderboard submission files written by ``trainer.predict`` (``python cli.py predict ...``).

* GLUE: ``<Task>.tsv`` (``MNLI-m.tsv`` for MNLI matched) with a header ``index\\tprediction``; classification
  predictions are label strings (``entailment``, ``1``...), STS-B scores are clipped to [0, 5].
* SuperGLUE: ``<Task>.jsonl`` with one ``{"idx": ..., "label": ...}`` per line, labels as the leaderboard expects
  them (``true`` / ``false`` for BoolQ and WiC, ``True`` / ``False`` for WSC, the choice number for COPA, the
  entity string for ReCoRD); MultiRC nests answers in questions in passages, one line per passage.

The writer reads official ids from the datamodule's prediction examples (``plan.predict``), indexed by the
``idx`` that ``PETModule.predict_step`` returns, so it needs a :class:`~pet_lightning.data.TaskDataModule`.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from pet_lightning.data.contract import task_data
from pet_lightning.tasks import TaskSpec

GLUE_FILE_NAMES = {"mnli": "MNLI-m"}
STSB_RANGE = (0.0, 5.0)


class SubmissionWriter(BasePredictionWriter):
    """Writes the official submission file of the task being predicted.

    Args:
        output_dir: Folder of the files; defaults to ``<trainer.log_dir or default_root_dir>/predictions``.
    """

    def __init__(self, output_dir: str | None = None):
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.written: Path | None = None
        self._rows: list[tuple[int, Any, list[float]]] = []

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = []

    def write_on_batch_end(
        self, trainer, pl_module, prediction: Any, batch_indices, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not isinstance(prediction, dict) or "idx" not in prediction:
            raise ValueError(
                "SubmissionWriter needs predict_step to return a dict with 'idx' and 'prediction' (PETModule does)"
            )
        idx = prediction["idx"].tolist()
        preds = prediction["prediction"].tolist()
        logits = prediction["logits"].float().cpu().tolist() if "logits" in prediction else [[] for _ in idx]
        self._rows.extend(zip(idx, preds, logits))

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = self._gather(self._rows)
        if trainer.global_rank != 0:
            return
        data = task_data(trainer)
        plan = data.plan if data else None
        if plan is None:
            raise ValueError("SubmissionWriter needs a pet_lightning TaskDataModule: pass datamodule= to predict()")
        rows = sorted({row[0]: row for row in rows}.values())  # unique, in file order
        default = Path(trainer.log_dir or trainer.default_root_dir) / "predictions"
        folder = Path(self.output_dir) if self.output_dir else default
        folder.mkdir(parents=True, exist_ok=True)
        self.written = write_submission(data.spec, plan.predict, rows, folder)

    @staticmethod
    def _gather(rows: list) -> list:
        if not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return rows
        # Evaluation shards are unequal under the unrepeated sampler, so gather Python objects, not tensors.
        shards: list[list] = [[] for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather_object(shards, rows)
        return [row for shard in shards for row in shard]


def submission_path(spec: TaskSpec, folder: Path) -> Path:
    if spec.benchmark == "glue":
        return folder / f"{GLUE_FILE_NAMES.get(spec.name, spec.folder)}.tsv"
    return folder / f"{spec.folder}.jsonl"


def write_submission(spec: TaskSpec, examples: list[dict[str, Any]], rows: list[tuple], folder: Path) -> Path:
    """Write ``rows`` = ``(idx, prediction, logits)`` for ``examples`` (the prediction split) in the official
    format of ``spec``'s benchmark; returns the file's path."""
    if len(rows) != len(examples):
        raise ValueError(
            f"{spec.name}: got {len(rows)} predictions for {len(examples)} test examples: predict on the whole "
            "test split (no limit_predict_batches)"
        )
    path = submission_path(spec, folder)
    if spec.benchmark == "glue":
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(("index", "prediction"))
            for idx, pred, _ in rows:
                writer.writerow((examples[idx]["idx"], _glue_label(spec, pred)))
        return path
    if spec.formulation == "multirc":
        lines = _multirc_lines(examples, rows)
    elif spec.formulation == "record":
        lines = _record_lines(examples, rows)
    else:
        lines = [{"idx": _official_idx(examples[idx]), "label": _superglue_label(spec, pred)} for idx, pred, _ in rows]
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")
    return path


def _official_idx(example: dict[str, Any]) -> Any:
    return example.get("meta", {}).get("idx", example["idx"])


def _glue_label(spec: TaskSpec, pred: Any) -> str:
    if spec.kind == "regression":
        low, high = STSB_RANGE
        return f"{min(max(float(pred), low), high):.3f}"
    return spec.label_values[int(pred)]


def _superglue_label(spec: TaskSpec, pred: Any) -> Any:
    if spec.kind == "multiple_choice":
        return int(pred)
    if spec.kind == "regression":  # a task file's regression task: the score as predicted
        return float(pred)
    return spec.label_values[int(pred)]


def _multirc_lines(examples: list[dict[str, Any]], rows: list[tuple]) -> list[dict[str, Any]]:
    passages: dict[Any, dict[Any, list[dict[str, int]]]] = defaultdict(lambda: defaultdict(list))
    for idx, pred, _ in rows:
        ids = examples[idx]["meta"]
        passages[ids["passage"]][ids["question"]].append({"idx": ids["answer"], "label": int(pred)})
    return [
        {
            "idx": passage,
            "passage": {"questions": [{"idx": q, "answers": answers} for q, answers in questions.items()]},
        }
        for passage, questions in passages.items()
    ]


def _record_lines(examples: list[dict[str, Any]], rows: list[tuple]) -> list[dict[str, Any]]:
    best: dict[int, tuple[float, dict[str, Any]]] = {}
    for idx, _, logits in rows:
        example = examples[idx]
        score = logits[1] - logits[0] if len(logits) == 2 else logits[0]
        group = example["group"]
        if group not in best or score > best[group][0]:  # ties keep the earlier candidate
            best[group] = (score, example["meta"])
    return [{"idx": meta["idx"], "label": meta["entity"]} for _, meta in (best[g] for g in sorted(best))]


__all__ = ["SubmissionWriter", "submission_path", "write_submission"]
