"""ResumeCheckpoints: who handles SIGUSR1 (ours outside SLURM, Lightning's requeue under it) and the run folder."""

from __future__ import annotations

import signal

import lightning as L

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.callbacks import ResumeCheckpoints
from pet_lightning.callbacks.resume import bind_resume

SLURM_ENV = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "pet", "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "localhost",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}


class SignalProbe(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.handler = signal.getsignal(signal.SIGUSR1)


def _fit(tiny: str, data_dir: str, tmp_path, **trainer_kwargs) -> tuple[SignalProbe, ResumeCheckpoints]:
    probe, resume = SignalProbe(), ResumeCheckpoints()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=tmp_path, callbacks=[probe], **trainer_kwargs)
    # As the CLI adds it: a Checkpoint in the constructor list would refuse enable_checkpointing=False.
    trainer.callbacks.append(resume)
    module = PETModule(backbone=tiny, task="rte", strategy="bitfit", init_seed=0)
    trainer.fit(module, datamodule=GlueDataModule(task="rte", data_dir=data_dir, backbone=tiny, batch_size=4,
                                                  max_length=16, train_subset=8, order_seed=0))
    return probe, resume


def test_sigusr1_is_turned_into_a_clean_stop_outside_slurm_and_restored_after(tiny, data_dir, tmp_path):
    before = signal.getsignal(signal.SIGUSR1)
    probe, _ = _fit(tiny, data_dir, tmp_path)
    assert probe.handler == ResumeCheckpoints._sigusr1_as_sigterm
    assert signal.getsignal(signal.SIGUSR1) == before


def test_under_slurm_sigusr1_stays_with_lightnings_requeue_handler(tiny, data_dir, tmp_path, monkeypatch):
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    probe, _ = _fit(tiny, data_dir, tmp_path)
    handlers = getattr(probe.handler, "signal_handlers", [])
    assert any(getattr(h, "__name__", "") == "_slurm_sigusr_handler_fn" for h in handlers), probe.handler


def test_run_folder_follows_the_configuration_and_ignores_checkpoint_callbacks(tiny, tmp_path):
    def folder(strategy: str, extra_callbacks=()) -> str:
        trainer = L.Trainer(accelerator="cpu", default_root_dir=tmp_path, logger=False,
                            callbacks=[ResumeCheckpoints(), *extra_callbacks])
        bind_resume(trainer)
        trainer.strategy._lightning_module = PETModule(backbone=tiny, task="rte", strategy=strategy, init_seed=0)
        (resume,) = [cb for cb in trainer.callbacks if isinstance(cb, ResumeCheckpoints)]
        return str(resume.run_folder)

    bitfit = folder("bitfit")
    assert bitfit.startswith(str(tmp_path / "resume"))
    assert folder("bitfit") == bitfit
    assert folder("bitfit", [L.pytorch.callbacks.ModelCheckpoint(every_n_train_steps=5)]) == bitfit
    assert folder("full") != bitfit
