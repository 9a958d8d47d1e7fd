"""Two DDP processes on CPU (gloo): what HeadFeatures writes, what CollapseGuard judges and the head ExactLinearProbe
solved, per rank (linear probing: the frozen encoder, its exact head, then the head trains).

Run by tests/test_gpu_ready.py: ``python -m tests.scripts.gather_ddp <out_dir> <devices> <tiny backbone folder>``.
Rank 0 also reads the head features of every example itself (one process, in order) as the reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.callbacks import CollapseGuard, ExactLinearProbe, HeadFeatures
from pet_lightning.callbacks.features import FEATURES_FILE, collect
from pet_lightning.probes import linear_head


class Record(L.Callback):
    def __init__(self, out: Path, guard: CollapseGuard):
        self.out, self.guard = out, guard
        self.probe_head: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:  # after ExactLinearProbe solved (listed before)
        head = linear_head(pl_module.model)
        self.probe_head = [*head.weight.detach().flatten().tolist(), *head.bias.detach().tolist()]

    def on_test_end(self, trainer, pl_module) -> None:
        guard = self.guard
        record = {"labels": {str(k): v for k, v in guard._labels.items()},
                  "classes": {str(k): v for k, v in guard._classes.items()},
                  "loss_batches": guard._loss_batches, "loss_sum": guard._loss_sum,
                  "findings": [(f.epoch, f.kind) for f in guard.findings], "probe_head": self.probe_head}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
        if trainer.global_rank == 0:
            dm = trainer.datamodule
            for split in ("train", "test"):
                datasets = dm.datasets[split]
                dataset = next(iter(datasets.values())) if isinstance(datasets, dict) else datasets
                loader = DataLoader(dataset, batch_size=dm.eval_batch_size, shuffle=False, collate_fn=dm.collator)
                np.savez(self.out / f"reference_{split}.npz", **collect(pl_module, loader))


def main(out: str, devices: int, backbone: str) -> None:
    out_dir = Path(out)
    module = PETModule(task="rte", backbone=backbone, strategy="frozen", learning_rate=1e-3, init_seed=0)
    data = GlueDataModule(task="rte", backbone=backbone, batch_size=4, max_length=32, train_subset=16, order_seed=7)
    guard = CollapseGuard(min_epoch=0)
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", precision="32-true",
        max_epochs=1, num_sanity_val_steps=0, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=out_dir,
        callbacks=[ExactLinearProbe(), guard, HeadFeatures(max_examples=10), Record(out_dir, guard)],
    )
    trainer.fit(module, datamodule=data)
    trainer.test(module, datamodule=data, verbose=False)
    assert (out_dir / FEATURES_FILE).is_file() or trainer.global_rank != 0


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
