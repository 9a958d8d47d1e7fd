"""Test a fixed tiny model on CoLA's reported split with N CPU processes, keeping its per-example predictions.

Run by tests/callbacks/test_report_predictions_ddp.py:
``python -m tests.scripts.report_predictions_ddp <devices> <backbone folder> <predictions.csv>``.
"""

from __future__ import annotations

import sys

import lightning as L

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.callbacks.report_predictions import ReportPredictions


def main(devices: int, backbone: str, out: str) -> None:
    module = PETModule(backbone=backbone, task="cola", strategy="full", init_seed=3)
    datamodule = GlueDataModule(task="cola", max_length=48, batch_size=16, eval_batch_size=50)
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", precision="32-true",
        logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        callbacks=[ReportPredictions(out)],
    )
    trainer.test(module, datamodule=datamodule, verbose=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
