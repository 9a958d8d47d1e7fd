"""EH-FT_BitFit under DDP on two CPU processes; each rank saves its weights at the switch and at the end.

Run by tests/callbacks/test_two_stage.py: ``python -m tests.scripts.two_stage_ddp <out_dir>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.callbacks import TwoStageTraining


class SaveWeights(L.Callback):
    def __init__(self, out: Path, switch: TwoStageTraining):
        self.out, self.switch, self.saved = out, switch, {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            self.saved["boundary"] = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}

    def on_fit_end(self, trainer, pl_module) -> None:
        self.saved["final"] = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
        self.saved["stage"] = self.switch.stage
        torch.save(self.saved, self.out / f"rank{trainer.global_rank}.pt")


def main(out: str) -> None:
    module = PETModule(task="rte", strategy="bitfit", learning_rate=1e-3, init_seed=0, warmup_ratio=0.0)
    data = GlueDataModule(task="rte", batch_size=8, max_length=32, train_subset=32, order_seed=0)
    switch = TwoStageTraining(stage1_epochs=1, learning_rate=1e-4, warmup_ratio=0.0)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", precision="32-true", max_epochs=2, limit_val_batches=0,
        num_sanity_val_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, callbacks=[switch, SaveWeights(Path(out), switch)],
    )
    trainer.fit(module, datamodule=data)


if __name__ == "__main__":
    main(sys.argv[1])
