"""Two DDP processes on CPU record the dropout stream each rank trains with.

Run by tests/test_distributed.py: ``python -m tests.scripts.dropout_ddp <out_dir>``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch

from pet_lightning import GlueDataModule, PETModule


class RecordStream(L.Callback):
    """At the first training batch: the seed of the stream dropout draws from, and the first mask it draws."""

    def __init__(self, out: Path):
        self.out = out

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx:
            return
        state = torch.get_rng_state()
        mask = torch.nn.functional.dropout(torch.ones(256), p=0.5).nonzero().flatten().tolist()
        torch.set_rng_state(state)  # leave the training stream as it was
        record = {"initial_seed": torch.initial_seed(), "mask": mask}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def main(out: str, devices: int) -> None:
    module = PETModule(task="rte", strategy="bitfit", learning_rate=1e-3, init_seed=0, hidden_dropout=0.1)
    data = GlueDataModule(task="rte", batch_size=4, max_length=32, train_subset=16, order_seed=1111)
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", precision="32-true",
        max_epochs=1, limit_train_batches=1, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        callbacks=[RecordStream(Path(out))],
    )
    trainer.fit(module, datamodule=data)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
