"""AdaLoRA's budget schedule as a callback: what peft leaves to the training loop.

peft's AdaLoRA prunes ranks only if the loop (1) tells it the total number of optimizer steps, (2) calls
``update_and_allocate(global_step)`` after every optimizer step, before the gradients are zeroed, and (3) adds the
orthogonal regulariser on P and Q to the loss (peft adds it only when the model computes the loss from labels,
which :class:`~pet_lightning.module.PETModule` does not). :class:`AdaLoraSchedule` does all three:

* the total is the learning-rate schedule's (``trainer.estimated_stepping_batches``, or the module's pinned
  ``optimizer_overrides["total_steps"]``), set at train start, so the budget reaches ``target_r`` on the last step;
* ``update_and_allocate`` runs once per optimizer step, with the number of steps taken so far, so under gradient
  accumulation it sees the accumulated gradients once per window;
* the regulariser's gradient (``orth_reg_weight`` x mean Frobenius norm of ``PP^T - I`` and ``Q^TQ - I``) is added to
  the gradients before each optimizer step; for the mean loss of an accumulation window that is the gradient of
  loss + regulariser.

Under ``16-mixed`` the gradients are unscaled through the loss scaler first (also for fused AdamW, which would
otherwise unscale only inside its step), so importance scores and the regulariser see true gradients; a step the
scaler skips for inf/NaN gradients leaves the scores as they were (:func:`unscale_for_reading`).

Its checkpoint state holds the importance scores and the rank pattern, so a resumed run prunes exactly as an
uninterrupted one. ``PETLightningCLI`` adds the callback whenever the strategy is AdaLoRA; without it, fitting an
AdaLoRA model fails at fit start with a one-line error.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from pet_lightning.strategies import StrategyError
from pet_lightning.strategies.peft_methods import SCHEDULE_MARK, adalora_model

_SCORES = ("ipt", "exp_avg_ipt", "exp_avg_unc")


def unscale_for_reading(trainer: L.Trainer, optimizer: Any) -> bool:
    """Make the gradients of ``optimizer`` unscaled under a loss scaler (``16-mixed``); returns whether they are
    finite.

    Lightning unscales before ``on_before_optimizer_step`` except for optimizers that unscale inside their step
    (fused AdamW, which the module picks without clipping): their gradients would still be multiplied by the loss
    scale here. Unscaling through the scaler itself is what ``scaler.step`` expects (it then passes no scale to the
    fused kernel). Reading the overflow flag is one host-device sync per optimizer step, under ``16-mixed`` only.
    """
    from torch.amp.grad_scaler import OptState

    scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
    if scaler is None or not scaler.is_enabled():
        return True
    optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer wraps the one the scaler knows
    state = scaler._per_optimizer_states[id(optimizer)]
    if state["stage"] is OptState.READY:
        scaler.unscale_(optimizer)
    return not any(bool(found) for found in state["found_inf_per_device"].values())


class AdaLoraSchedule(L.Callback):
    """Sets AdaLoRA's total steps, allocates its rank budget after every optimizer step and adds its orthogonal
    regulariser (see the module docstring). A no-op for any other strategy."""

    def __init__(self) -> None:
        self._last_step: int | None = None
        self._finite = True  # whether this step's gradients were finite (always, without a loss scaler)
        self._restored: dict[str, Any] | None = None
        self._module: L.LightningModule | None = None

    @staticmethod
    def _tuner(pl_module: L.LightningModule) -> Any:
        return adalora_model(getattr(pl_module, "model", pl_module))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._module = pl_module  # state_dict() reads the allocator's scores from it
        tuner = self._tuner(pl_module)
        if tuner is not None:
            # The strategy's check_run (at fit start) refuses AdaLoRA models that no schedule drives.
            setattr(tuner, SCHEDULE_MARK, True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tuner = self._tuner(pl_module)
        if tuner is None:
            return
        config = tuner.peft_config[tuner.trainable_adapter_name]
        overrides = getattr(pl_module, "optimizer_overrides", {}) or {}
        total = int(overrides.get("total_steps") or trainer.estimated_stepping_batches)
        if not config.tinit < total - config.tfinal:
            raise StrategyError(
                f"adalora tinit={config.tinit} and tfinal={config.tfinal} leave no pruning phase in {total} optimizer "
                "steps: lower them or train longer"
            )
        tuner.rankallocator.set_total_step(total)
        if self._restored is not None:
            device = next(tuner.parameters()).device
            for key in _SCORES:
                setattr(tuner.rankallocator, key, {n: t.to(device) for n, t in self._restored[key].items()})
            config.rank_pattern = self._restored["rank_pattern"]
            self._restored = None
        self._last_step = trainer.global_step

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        tuner = self._tuner(pl_module)
        if tuner is None:
            return
        self._finite = unscale_for_reading(trainer, optimizer)
        adapter = tuner.trainable_adapter_name
        weight = tuner.peft_config[adapter].orth_reg_weight
        matrices = [
            (name, p) for name, p in tuner.model.named_parameters()
            if p.requires_grad and adapter in name and ("lora_A" in name or "lora_B" in name)
        ]
        if weight == 0 or not matrices:
            return
        with torch.enable_grad():
            terms = []
            for name, p in matrices:
                gram = p @ p.T if "lora_A" in name else p.T @ p
                identity = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
                terms.append(torch.linalg.matrix_norm(gram - identity))
            grads = torch.autograd.grad(weight * torch.stack(terms).mean(), [p for _, p in matrices])
        for (_, p), grad in zip(matrices, grads):
            p.grad = grad if p.grad is None else p.grad.add_(grad)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        tuner = self._tuner(pl_module)
        if tuner is None or trainer.global_step == self._last_step:
            return  # accumulating: no optimizer step this batch
        self._last_step = trainer.global_step
        allocator = tuner.rankallocator
        if not self._finite and not allocator.ipt:
            # Nothing scored yet (a fresh scaler's first steps overflow): score this step as zero gradients (the
            # scaler skipped it, and they are zeroed before the next) rather than skip, so that an allocation due
            # now still happens.
            for name, p in tuner.model.named_parameters():
                if "lora_" in name and p.grad is not None:
                    p.grad.zero_()
            self._finite = True
        if not self._finite:
            # The loss scaler skipped this step (inf/NaN gradients): scoring them would make the moving averages NaN
            # for good (and NaN scores are never pruned). Keep the scores; the budget schedule still advances.
            allocator.update_ipt = lambda model: None
        try:
            if not allocator.ipt:
                # peft scores importance only before the final allocation step; a run whose first step is that
                # step (fast_dev_run, tiny subsets) would allocate from no scores: score this step's gradients first.
                allocator.update_ipt(tuner.model)
            # Steps taken so far (1-based): on the last step the budget is exactly target_r per layer on average.
            tuner.update_and_allocate(trainer.global_step)
        finally:
            allocator.__dict__.pop("update_ipt", None)

    def state_dict(self) -> dict[str, Any]:
        if self._restored is not None:  # restored but not yet applied (saved before training started)
            return self._restored
        tuner = None if self._module is None else self._tuner(self._module)
        if tuner is None:
            return {}
        allocator = tuner.rankallocator
        return {
            **{key: {n: t.detach().cpu().clone() for n, t in getattr(allocator, key).items()} for key in _SCORES},
            "rank_pattern": tuner.peft_config[tuner.trainable_adapter_name].rank_pattern,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict) if state_dict else None
