"""The end-of-fit SUMMARY line reports the best validation value actually logged."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.callbacks import RunSummary


class RecordHeadline(Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.values.append(float(trainer.callback_metrics["val/headline"]))


def test_summary_reports_the_maximum_of_the_logged_headline(tmp_path, data_dir, capsys):
    L.seed_everything(1)
    summary, record = RunSummary(), RecordHeadline()
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=2, callbacks=[summary, record], default_root_dir=tmp_path)
    module = PETModule(task="rte", strategy="frozen", learning_rate=5e-2)
    trainer.fit(module, datamodule=GlueDataModule(task="rte", data_dir=data_dir, batch_size=16, max_length=32,
                                                  train_subset=32, eval_batch_size=16))
    assert len(record.values) == 3
    assert summary.best == max(record.values)
    assert summary.best_epoch == record.values.index(max(record.values))
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("SUMMARY ")][0]
    fields = dict(item.split("=", 1) for item in line.split()[1:])
    assert float(fields["best_val_accuracy"]) == round(max(record.values), 4)
    assert fields["strategy"] == "frozen" and float(fields["trainable_pct"]) == 0.0
    assert int(fields["epochs"]) == 3 and int(fields["steps"]) == 6
    assert fields["protocol"] == "standard" and fields["leaky"] == "true"


class RecordBoth(Callback):
    def __init__(self) -> None:
        self.rows: list[tuple[float, float]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics
        self.rows.append((float(metrics["val/headline"]), float(metrics["val/loss"])))


def test_summary_reports_the_headline_at_the_epoch_the_monitor_selected(tmp_path, data_dir, capsys):
    from lightning.pytorch.callbacks import ModelCheckpoint

    L.seed_everything(1)
    summary, record = RunSummary(), RecordBoth()
    keep = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", mode="min", save_top_k=1, filename="{epoch}")
    trainer = L.Trainer(accelerator="cpu", max_epochs=4, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=2,
                        callbacks=[summary, record, keep], default_root_dir=tmp_path)
    module = PETModule(task="rte", strategy="frozen", learning_rate=5e-2)
    trainer.fit(module, datamodule=GlueDataModule(task="rte", data_dir=data_dir, batch_size=16, max_length=32,
                                                  train_subset=32, eval_batch_size=16))
    losses = [loss for _, loss in record.rows]
    chosen = losses.index(min(losses))
    headlines = [headline for headline, _ in record.rows]
    # The run must select an epoch other than the best-headline one, or this would not test the selection.
    assert headlines[chosen] < max(headlines), record.rows
    assert keep.best_model_path.endswith(f"epoch={chosen}.ckpt")
    assert summary.best_epoch == chosen and summary.best == record.rows[chosen][0]
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("SUMMARY ")][0]
    fields = dict(item.split("=", 1) for item in line.split()[1:])
    assert fields["selected_by"] == "val/loss"
    assert float(fields["best_val_accuracy"]) == round(record.rows[chosen][0], 4)
    assert int(fields["best_epoch"]) == chosen
