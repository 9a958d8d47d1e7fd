"""Two-stage training in one ``trainer.fit``: EH-FT and LP-FT (Yang et al.; Kumar et al.).

Stage 1 trains the task head together with whatever the module's strategy trains (``lora``, ``prefix``,
``bitfit``... or ``frozen`` for LP-FT), with the module's learning rate and warmup over stage 1 only. At the
boundary the callback

1. removes the stage-1 method (``module.report.remove()``), keeping the trained head,
2. puts every backbone tensor back to its pretrained value, bit for bit, from the backbone's source (a BitFit
   stage 1 changed biases: they go back),
3. optionally resets the head's biases to a fresh head's (``keep_head_bias=False``: the study's BitFit row copied
   only the head's weights); backbone tensors the checkpoint lacks (a pooler) are re-drawn from ``init_seed``,
   i.e. left as stage 1 read them,
4. applies the stage-2 strategy (full fine-tuning by default),
5. builds a new optimizer and scheduler whose warmup and linear decay span stage 2 only, and re-wraps the model
   in DDP so the parameters that start training now stay in sync across processes.

The stage is kept in the callback's checkpoint state (and the strategy in the module's), so a resumed run goes
on in the stage it was in, with that stage's optimizer state. ``train/stage`` is logged every step.

>>> trainer = L.Trainer(max_epochs=20, callbacks=[TwoStageTraining(learning_rate=1e-5)])
>>> trainer.fit(PETModule(task="rte", strategy="bitfit", learning_rate=5e-4), datamodule=dm)
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.optim import Optimizer

from pet_lightning.callbacks.freezing import StrategyFreezing
from pet_lightning.callbacks.selection import stage_blind_selectors
from pet_lightning.strategies import Strategy, build_strategy
from pet_lightning.strategies.base import backbone_of, head_parameters


class TwoStageTraining(StrategyFreezing):
    """Train the module's strategy first, then switch to a fresh backbone with the stage-1 head (EH-FT, LP-FT).

    Replaces :class:`StrategyFreezing` (the CLI then adds no second one): do not use both in one trainer.

    Args:
        stage2_strategy: Strategy of stage 2 (name, ``{"name": ..., **settings}`` or a strategy); ``full`` in
            EH-FT and LP-FT.
        stage1_epochs: Epochs of stage 1. None takes ``stage1_fraction`` of ``trainer.max_epochs``.
        stage1_fraction: Fraction of the epochs spent in stage 1 when ``stage1_epochs`` is None (rounded, at
            least 1); the EH-FT study used 0.1.
        learning_rate: Peak learning rate of the backbone in stage 2 (1e-5 in the study).
        head_learning_rate: Peak learning rate of the head in stage 2; defaults to ``learning_rate``.
        warmup_ratio: Fraction of the stage-2 steps spent warming up; then linear decay to 0 at the end.
        keep_head_bias: Keep the stage-1 head's biases (True: the EH-FT code's LoRA, PT and LP-FT rows, which load
            the whole stage-1 checkpoint) or reset them to a freshly initialised head's (False: its BitFit row,
            which copies only the weights, ``mlp_head.py:45-50``). Nothing else of the head changes at the switch.
        log_stage: Log ``train/stage`` (1 or 2) every training step.
        select_stage1: Let stage-1 epochs be selected as the kept checkpoint (and count towards early
            stopping). Off by default: the studies report the fine-tuned model, stage 1 only initialises the
            head. Selection goes through :class:`~pet_lightning.callbacks.SelectionCheckpoint` and
            :class:`~pet_lightning.callbacks.SelectionEarlyStopping`; a plain monitored ``ModelCheckpoint`` or
            ``EarlyStopping`` beside this callback is refused.
    """

    def __init__(
        self,
        stage2_strategy: str | dict[str, Any] | Strategy = "full",
        stage1_epochs: int | None = None,
        stage1_fraction: float = 0.1,
        learning_rate: float = 1e-5,
        head_learning_rate: float | None = None,
        warmup_ratio: float = 0.1,
        keep_head_bias: bool = True,
        log_stage: bool = True,
        select_stage1: bool = False,
    ):
        super().__init__()
        if stage1_epochs is not None and stage1_epochs < 1:
            raise ValueError(f"stage1_epochs={stage1_epochs}: use at least 1 epoch, or None for stage1_fraction")
        if not 0 < stage1_fraction < 1:
            raise ValueError(f"stage1_fraction={stage1_fraction}: use a fraction in (0, 1), e.g. 0.1")
        if learning_rate <= 0 or (head_learning_rate is not None and head_learning_rate <= 0):
            raise ValueError("TwoStageTraining learning rates must be positive: e.g. learning_rate: 1.0e-5")
        if not 0 <= warmup_ratio < 1:
            raise ValueError(f"warmup_ratio={warmup_ratio}: use a fraction in [0, 1)")
        self.stage2_strategy = build_strategy(stage2_strategy)
        self.stage1_epochs = stage1_epochs
        self.stage1_fraction = stage1_fraction
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.warmup_ratio = warmup_ratio
        self.keep_head_bias = keep_head_bias
        self.log_stage = log_stage
        self.select_stage1 = select_stage1
        self.stage = 1
        self.boundary_epoch: int | None = None
        self._pl_module: L.LightningModule | None = None

    # ------------------------------------------------------------------------------------------ planning
    def boundary(self, trainer: L.Trainer) -> int:
        """The epoch at which stage 2 starts."""
        if self.stage1_epochs is not None:
            return self.stage1_epochs
        max_epochs = trainer.max_epochs
        if max_epochs is None or max_epochs < 1:
            raise ValueError(
                "TwoStageTraining needs trainer.max_epochs to place the boundary: set max_epochs or stage1_epochs"
            )
        return max(1, round(self.stage1_fraction * max_epochs))

    @staticmethod
    def _steps_per_epoch(trainer: L.Trainer) -> int:
        # estimated_stepping_batches loads the train dataloader, which sets num_training_batches.
        _ = trainer.estimated_stepping_batches
        batches = trainer.num_training_batches
        if math.isinf(batches):
            raise ValueError("TwoStageTraining needs a train dataloader with a length (or set limit_train_batches)")
        return max(1, math.ceil(batches / trainer.accumulate_grad_batches))

    # ------------------------------------------------------------------------------------------- hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        blind = stage_blind_selectors(trainer)
        if blind:
            raise ValueError(
                f"TwoStageTraining beside {', '.join(blind)} would select stage-1 epochs: use "
                "pet_lightning.callbacks.SelectionCheckpoint / SelectionEarlyStopping (stage-aware) instead"
            )
        self._pl_module = pl_module
        self.boundary_epoch = self.boundary(trainer)
        if trainer.max_epochs is not None and self.boundary_epoch >= trainer.max_epochs > 0:
            rank_zero_warn(
                f"TwoStageTraining: stage 1 lasts {self.boundary_epoch} epochs of max_epochs={trainer.max_epochs}: "
                "stage 2 will not run (raise max_epochs or lower stage1_epochs)"
            )
        total = int(trainer.estimated_stepping_batches)
        stage1_steps = min(total, self.boundary_epoch * self._steps_per_epoch(trainer))
        # The module's learning rate and warmup are stage 1's; its schedule ends at the boundary. Only the schedule's
        # shape (a LearningRateSchedule's) stays of earlier overrides: a previous fit's stage 2 must not leak in.
        shape = {k: v for k, v in pl_module.optimizer_overrides.items() if k == "schedule"}
        pl_module.optimizer_overrides = {**shape, "total_steps": max(1, stage1_steps)}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # BaseFinetuning would restore stage-1 parameter groups by name here, which breaks a stage-2 resume:
        # configure_optimizers already built the groups of the checkpoint's stage.
        self._restarting = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # >= and not ==: a run resumed past the boundary epoch must still switch (BaseFinetuning's pitfall).
        if self.stage == 1 and trainer.current_epoch >= self.boundary_epoch:
            self.switch(trainer, pl_module)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """Unused: the switch happens in :meth:`on_train_epoch_start`."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Every fit, a resumed one included (it may start mid-epoch, where no epoch-start hook runs first).
        self._make_stage_tensor(pl_module)

    def _make_stage_tensor(self, pl_module: L.LightningModule) -> None:
        # Made once per stage on the device, outside the steps: a Python float logged every step is copied to the
        # device each time (a host-device sync).
        self._stage_tensor = torch.tensor(float(self.stage), device=pl_module.device)

    def may_select_now(self) -> bool:
        """Selection gate (:class:`~pet_lightning.callbacks.selection.SelectionGate`): stage 2, or stage 1 with
        ``select_stage1``."""
        return self.stage == 2 or self.select_stage1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.log_stage:
            pl_module.log("train/stage", self._stage_tensor, on_step=True, on_epoch=False, batch_size=1)

    # ------------------------------------------------------------------------------------------ the switch
    def switch(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Stage 1 -> stage 2: fresh backbone, stage-1 head, stage-2 strategy, optimizer and schedule."""
        plain = pl_module.report.remove()  # apply_strategy's own remove() then returns this same model
        self.restore_pretrained(pl_module, plain)
        pl_module.model = plain
        report = pl_module.apply_strategy(self.stage2_strategy)
        pl_module.optimizer_overrides = {**pl_module.optimizer_overrides, **self.stage2_overrides(trainer)}
        if isinstance(trainer.strategy, DDPStrategy):
            # DDP syncs only what required grad when it wrapped the model.
            trainer.strategy.model = trainer.strategy.lightning_module
            trainer.strategy.configure_ddp()
        trainer.strategy.setup_optimizers(trainer)
        self.stage = 2
        self._make_stage_tensor(pl_module)
        rank_zero_info(f"[pet_lightning] stage 2 from epoch {trainer.current_epoch} (step {trainer.global_step})")
        self.log_report(pl_module, report, prefix="stage2")

    def stage2_overrides(self, trainer: L.Trainer) -> dict[str, Any]:
        remaining = int(trainer.estimated_stepping_batches) - trainer.global_step
        return {
            "learning_rate": self.learning_rate,
            "head_learning_rate": self.head_learning_rate or self.learning_rate,
            "warmup_ratio": self.warmup_ratio,
            "total_steps": max(1, remaining),
        }

    def restore_pretrained(self, pl_module: L.LightningModule, plain: torch.nn.Module) -> None:
        """Copy the pretrained backbone (and, without ``keep_head_bias``, a fresh head's biases) into ``plain``."""
        # The module reloads its source off the global random stream (a new head is initialised), so stage 2
        # draws the same dropout masks whether or not the run was resumed; checkpoint loads use the same reload.
        # Under the module's init_seed, tensors the checkpoint lacks (roberta-large ships no pooler) are drawn as
        # the build drew them: the stage-1 head keeps reading the features it was trained on.
        init_seed = pl_module.hparams.get("init_seed")
        with torch.random.fork_rng(devices=[]):
            if init_seed is not None:
                torch.manual_seed(init_seed)
            fresh = pl_module.pretrained_model(plain.config)
        target = backbone_of(plain).state_dict(keep_vars=True)
        source = backbone_of(fresh).state_dict()
        if set(target) != set(source):
            odd = sorted(set(target) ^ set(source))[:3]
            raise RuntimeError(
                f"the backbone left by strategy {pl_module.strategy.name!r} does not match the pretrained one "
                f"(e.g. {odd}): its undo() must return the plain Hugging Face model"
            )
        fresh_head = dict(head_parameters(fresh))
        with torch.no_grad():
            for name, tensor in target.items():
                tensor.copy_(source[name])
            if not self.keep_head_bias:
                for name, param in head_parameters(plain).items():
                    if name.rsplit(".", 1)[-1] == "bias":
                        param.copy_(fresh_head[name])
        if not self.keep_head_bias:
            # A fresh head's regression bias starts where the module's option puts it (the label mean, or zero).
            pl_module.fill_regression_bias()

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        overrides = dict(self._pl_module.optimizer_overrides) if self._pl_module is not None else {}
        return {"stage": self.stage, "boundary_epoch": self.boundary_epoch, "optimizer_overrides": overrides}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restarting = True
        self.stage = int(state_dict["stage"])
        # Restored after setup() and before configure_optimizers(): the optimizer is rebuilt for the
        # checkpoint's stage, so its saved state fits.
        if self._pl_module is not None and state_dict.get("optimizer_overrides"):
            self._pl_module.optimizer_overrides = dict(state_dict["optimizer_overrides"])


__all__ = ["TwoStageTraining"]
