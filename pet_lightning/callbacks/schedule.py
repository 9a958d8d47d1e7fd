"""The learning-rate schedule's shape as a callback: the EH-FT code's ``AnnealingLR`` beside Hugging Face's linear one.

``PETModule`` builds its schedule from ``optimizer_overrides`` (see :func:`pet_lightning.optim.build_scheduler`);
this callback puts the shape there before the optimizer is built. :class:`~pet_lightning.callbacks.TwoStageTraining`
keeps it for stage 2, where the schedule starts again (the study's code restarts it per stage, 100 steps at 5%
included).

>>> trainer = L.Trainer(callbacks=[LearningRateSchedule("sat_annealing")])
"""

from __future__ import annotations

from typing import Any

import lightning as L

from pet_lightning.optim import SCHEDULES


class LearningRateSchedule(L.Callback):
    """Pick the module's schedule: ``linear`` (warm-up, then linear decay to 0) or ``sat_annealing`` (the EH-FT
    code's: ``constant_steps`` at ``constant_rate`` of the peak, warm-up, then decay to ``warmup_ratio`` of the
    peak; :func:`pet_lightning.optim.sat_annealing_factor`).

    Args:
        name: ``linear`` or ``sat_annealing``.
        constant_steps: ``sat_annealing``: steps at ``constant_rate`` at the start of each stage (100 in the study).
        constant_rate: ``sat_annealing``: their fraction of the peak rate (0.05 in the study).
    """

    def __init__(self, name: str = "linear", constant_steps: int = 100, constant_rate: float = 0.05):
        if name not in SCHEDULES:
            raise ValueError(f"LearningRateSchedule name={name!r}: choose one of {', '.join(SCHEDULES)}")
        if constant_steps < 0 or not 0 < constant_rate <= 1:
            raise ValueError(f"LearningRateSchedule constant_steps={constant_steps}, constant_rate={constant_rate}: "
                             "use steps >= 0 and a rate in (0, 1], e.g. 100 and 0.05")
        self.schedule: dict[str, Any] = {"name": name}
        if name == "sat_annealing":
            self.schedule.update(constant_steps=int(constant_steps), constant_rate=float(constant_rate))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            pl_module.optimizer_overrides = {**pl_module.optimizer_overrides, "schedule": dict(self.schedule)}


__all__ = ["LearningRateSchedule"]
