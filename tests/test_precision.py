"""The bf16 check: a measured slowdown, one warning for a CPU fit in bf16 where bf16 is emulated, none elsewhere."""

from __future__ import annotations

import math
import warnings

import lightning as L
import pytest
import torch

from pet_lightning import PETModule, precision

WARNING = "on a CPU that emulates bf16"


def test_the_slowdown_is_measured_once_and_leaves_the_global_rng_alone():
    precision.cpu_bf16_slowdown.cache_clear()
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    slowdown = precision.cpu_bf16_slowdown()
    assert torch.equal(torch.rand(4), expected), "the check drew from the global generator a fit is seeded with"
    assert math.isfinite(slowdown) and slowdown > 0
    assert precision.cpu_bf16_slowdown() == slowdown  # cached: one measurement per process


def test_the_timed_passes_are_bf16_and_float32_linear_layers(monkeypatch):
    seen: list[torch.dtype] = []
    linear = torch.nn.functional.linear

    def spy(x, weight, bias=None):
        out = linear(x, weight, bias)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.functional, "linear", spy)
    bf16_s = precision._linear_seconds(True, rows=8, width=8, repeats=2)
    fp32_s = precision._linear_seconds(False, rows=8, width=8, repeats=2)
    assert bf16_s > 0 and fp32_s > 0
    assert seen == [torch.bfloat16] * 3 + [torch.float32] * 3  # one uncounted pass, then the repeats


@pytest.mark.parametrize("slowdown,expected", [(15.0, True), (2.5, True), (1.9, False), (0.7, False)])
def test_a_message_only_above_the_threshold(monkeypatch, slowdown, expected):
    monkeypatch.setattr(precision, "cpu_bf16_slowdown", lambda: slowdown)
    message = precision.emulated_bf16_message("bf16-mixed", "cpu")
    assert (message is not None) is expected
    if expected:
        assert f"{slowdown:.1f}x slower" in message and "32-true" in message and "\n" not in message


def test_no_measurement_for_other_precisions_or_devices(monkeypatch):
    def never() -> float:
        raise AssertionError("measured although nothing runs in bf16 on a CPU")

    monkeypatch.setattr(precision, "cpu_bf16_slowdown", never)
    assert precision.emulated_bf16_message("32-true", "cpu") is None
    assert precision.emulated_bf16_message("16-mixed", "cpu") is None
    assert precision.emulated_bf16_message("bf16-mixed", "cuda") is None


def _fit(tmp_path, tiny: str, precision_name: str) -> list[str]:
    module = PETModule(backbone=tiny, task="rte", strategy="bitfit", learning_rate=1e-3)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, precision=precision_name, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    loader = torch.utils.data.DataLoader(
        [{"input_ids": torch.tensor([101, 2000 + i, 102]), "attention_mask": torch.ones(3, dtype=torch.long),
          "label": torch.tensor(i % 2)} for i in range(2)], batch_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, train_dataloaders=loader)
    return [str(w.message) for w in caught if WARNING in str(w.message)]


@pytest.mark.parametrize("slowdown,precision_name,warned", [(15.0, "bf16-mixed", True), (0.7, "bf16-mixed", False),
                                                             (15.0, "32-true", False)])
def test_a_cpu_fit_warns_once_where_bf16_is_emulated(tmp_path, tiny, monkeypatch, slowdown, precision_name,
                                                      warned):
    monkeypatch.setattr(precision, "cpu_bf16_slowdown", lambda: slowdown)
    found = _fit(tmp_path, tiny, precision_name)
    assert len(found) == (1 if warned else 0), found
