"""The EH-FT code's learning-rate schedule (SAT AnnealingLR) beside Hugging Face's linear one, per stage."""

from __future__ import annotations

import pytest
import torch

from pet_lightning import PETModule
from pet_lightning.callbacks import LearningRateSchedule, TwoStageTraining
from pet_lightning.optim import build_scheduler, sat_annealing_factor
from tests.helpers.data import small_glue
from tests.helpers.probes import LearningRates
from tests.helpers.trainers import quiet_trainer


def test_sat_annealing_holds_5_percent_then_warms_up_then_decays_to_the_warmup_share():
    total, warmup = 2000, 200
    factors = [sat_annealing_factor(step, total, warmup) for step in range(total + 1)]
    assert set(factors[:101]) == {0.05}  # the first 100 steps (and step 0) at 5% of the rate
    assert factors[150] == pytest.approx(0.75) and factors[200] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(warmup / total) == 0.1  # ends at 10% of the peak, not 0
    assert all(a >= b for a, b in zip(factors[200:], factors[201:]))


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def test_build_scheduler_keeps_huggingfaces_linear_schedule_by_default():
    linear = build_scheduler(_optimizer(), {"warmup_ratio": 0.1}, 100)
    rates = []
    for _ in range(100):
        rates.append(linear.get_last_lr()[0])
        linear.optimizer.step()
        linear.step()
    assert rates[0] == 0.0 and rates[10] == pytest.approx(1.0) and rates[-1] == pytest.approx(1 / 90)  # 0 at 100
    sat = build_scheduler(_optimizer(), {"warmup_ratio": 0.1, "schedule": {"name": "sat_annealing"}}, 100)
    assert sat.get_last_lr()[0] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="choose one of linear, sat_annealing"):
        build_scheduler(_optimizer(), {"warmup_ratio": 0.1, "schedule": {"name": "cosine"}}, 100)
    with pytest.raises(ValueError, match="LearningRateSchedule name='cosine'"):
        LearningRateSchedule("cosine")


def test_two_stage_restarts_their_schedule_at_the_switch(tmp_path, data_dir, tiny):
    dm = small_glue(data_dir, backbone=tiny, batch_size=4)
    module = PETModule(backbone=tiny, task="rte", strategy="bitfit", learning_rate=1e-2, warmup_ratio=0.25,
                       init_seed=0)
    rates = LearningRates()
    callbacks = [LearningRateSchedule("sat_annealing", constant_steps=1, constant_rate=0.05),
                 TwoStageTraining(stage1_epochs=1, learning_rate=1e-3, warmup_ratio=0.25), rates]
    trainer = quiet_trainer(tmp_path, precision="32-true", limit_val_batches=0, max_epochs=2, callbacks=callbacks)
    trainer.fit(module, datamodule=dm)
    steps = len(rates.rates) // 2
    assert steps == 4
    expected = [peak * sat_annealing_factor(step, steps, 1, 1, 0.05)
                for peak in (1e-2, 1e-3) for step in range(steps)]
    assert rates.rates == pytest.approx(expected)
