"""Formulations: how the rows of a task's files become model inputs.

An *example* is a dict with ``text`` (a string, or one string per choice for multiple choice), an optional
``text_pair`` (same shape as ``text``), ``label`` (int class id, float score, or None where the split has no
labels), ``idx`` (the row's id, used in prediction files) and any task extras (``group`` for MultiRC).

Formulations are looked up by the task table's ``formulation`` field; SuperGLUE adds its own in
``pet_lightning.data.superglue``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pet_lightning.data.readers import DataError
from pet_lightning.tasks import TaskSpec

Example = dict[str, Any]
Formulation = Callable[[TaskSpec, list[dict[str, Any]], str], list[Example]]

FORMULATIONS: dict[str, Formulation] = {}


def register_formulation(name: str) -> Callable[[Formulation], Formulation]:
    def decorate(function: Formulation) -> Formulation:
        FORMULATIONS[name] = function
        return function

    return decorate


def label_id(spec: TaskSpec, value: Any, where: str) -> int | float | None:
    """Turn a label as stored (a string in local files, an int or float on the hub) into a class id or score.

    Hub test splits mark missing labels with -1; those become None.
    """
    if value is None or value == "" or (isinstance(value, int) and not isinstance(value, bool) and value < 0):
        return None
    if spec.kind == "regression":
        try:
            return float(value)
        except ValueError:
            raise DataError(f"{where}: score {value!r} is not a number: fix that row") from None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if value >= len(spec.label_values):
            raise DataError(
                f"{where}: label id {value} out of range for {spec.name} ({len(spec.label_values)} labels)"
            )
        return value
    text = str(value)
    if text not in spec.label_values:
        raise DataError(f"{where}: label {text!r} is not one of {list(spec.label_values)}: fix that row")
    return spec.label_values.index(text)


@register_formulation("pair")
def sentence_pair(spec: TaskSpec, rows: list[dict[str, Any]], source: str) -> list[Example]:
    """One sentence or a sentence pair, one label (all GLUE tasks)."""
    examples = []
    for number, row in enumerate(rows):
        examples.append(
            {
                "text": row["text_a"],
                "text_pair": row.get("text_b"),
                "label": label_id(spec, row.get("label"), f"{source} row {number + 1}"),
                "idx": number,
            }
        )
    return examples


def formulate(spec: TaskSpec, rows: list[dict[str, Any]], source: str) -> list[Example]:
    if spec.formulation not in FORMULATIONS:
        raise ValueError(
            f"task {spec.name} needs formulation {spec.formulation!r}, which is not registered: "
            "import pet_lightning.data (it registers all formulations)"
        )
    return FORMULATIONS[spec.formulation](spec, rows, source)
