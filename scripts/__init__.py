"""Tables of short real runs of the shipped configs: what each method reaches and costs in a few epochs.

    python -m scripts.revisiting_table --epochs 2 --train-subset 1000
    python -m scripts.superglue_table --epochs 2 --train-subset 1000
    python -m scripts.transferability_table --tasks rte mrpc --epochs 1 --train-subset 1000

Each row is a real ``fit`` (:func:`pet_lightning.lightning_cli.fit_summary`), so the figures come from the code
path users run.
"""

from __future__ import annotations


def best_headline(fields: dict[str, str]) -> tuple[str, float]:
    """The ``best_val_<metric>`` entry of a SUMMARY: (metric name, value)."""
    key = next(key for key in fields if key.startswith("best_val_"))
    return key.removeprefix("best_val_"), float(fields[key])
