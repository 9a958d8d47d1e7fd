"""Validate a fixed model on CoLA dev with N CPU processes and write the metrics as JSON (rank 0).

Run by tests/test_distributed.py: ``python -m tests.scripts.validate_metrics <devices> <out.json>``.
"""

from __future__ import annotations

import json
import sys

import lightning as L

from pet_lightning import GlueDataModule, PETModule


def main(devices: int, out: str) -> None:
    module = PETModule(task="cola", strategy="frozen", init_seed=3)
    datamodule = GlueDataModule(task="cola", max_length=48, batch_size=16, eval_batch_size=50)
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", precision="32-true",
        logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    if trainer.is_global_zero:
        with open(out, "w") as handle:
            json.dump({key: float(value) for key, value in metrics.items()}, handle)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
