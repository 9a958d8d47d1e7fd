"""The shared AdamW: fused kernel where every parameter allows it, the default kernel elsewhere, the same update."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from pet_lightning import PETModule
from pet_lightning.optim import adamw, fused_supported


def _params(n: int = 3, dtype: torch.dtype = torch.float32, device: str = "cpu") -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(4, 5, generator=gen, dtype=torch.float32).to(dtype).to(device))
            for _ in range(n)]


def test_cpu_float_parameters_get_the_fused_kernel():
    assert adamw([{"params": _params()}], lr=1e-3).defaults["fused"] is True
    assert adamw([{"params": _params(dtype=torch.bfloat16)}], lr=1e-3).defaults["fused"] is True


def test_meta_parameters_or_tensor_subclasses_keep_the_default_kernel():
    assert not fused_supported(_params(device="meta"))
    assert not fused_supported([])

    class Wrapped(torch.Tensor):
        pass

    sub = torch.zeros(3).as_subclass(Wrapped)
    assert not fused_supported([sub])
    assert adamw([{"params": _params(device="meta")}], lr=1e-3).defaults["fused"] is None


def test_fused_update_equals_the_default_kernel_to_float_rounding():
    fused, plain = _params(), _params()
    opts = [adamw([{"params": fused, "weight_decay": 0.01}], lr=1e-2),
            torch.optim.AdamW([{"params": plain, "weight_decay": 0.01}], lr=1e-2)]
    assert opts[0].defaults["fused"] and not opts[1].defaults["fused"]
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        grads = [torch.randn(4, 5, generator=gen) for _ in fused]
        for params, opt in zip((fused, plain), opts):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    start = _params()
    for a, b, s in zip(fused, plain, start):
        assert not torch.equal(a, s), "the step moved nothing"
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_petmodule_builds_the_fused_optimizer_with_its_groups(tmp_path, tiny):
    module = PETModule(backbone=tiny, task="rte", strategy="bitfit", learning_rate=1e-3)
    module.trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                               enable_progress_bar=False, default_root_dir=tmp_path)
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"] is True
    assert [g["name"] for g in optimizer.param_groups] == [g["name"] for g in module.parameter_groups(1e-3, 1e-3)]


@pytest.mark.parametrize("precision,clip,fused", [("bf16-mixed", 0.1, None), ("bf16-mixed", None, True),
                                                  ("32-true", 0.1, True)])
def test_clipping_under_mixed_precision_keeps_the_default_kernel_and_fits(tmp_path, tiny, precision, clip, fused):
    # Lightning refuses gradient clipping with a fused optimizer under its mixed-precision plugin.
    module = PETModule(backbone=tiny, task="rte", strategy="bitfit", learning_rate=1e-3)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, precision=precision, gradient_clip_val=clip, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    loader = torch.utils.data.DataLoader(
        [{"input_ids": torch.tensor([101, 2000 + i, 102]), "attention_mask": torch.ones(3, dtype=torch.long),
          "label": torch.tensor(i % 2)} for i in range(4)], batch_size=2)
    before = {n: p.detach().clone() for n, p in module.model.named_parameters() if p.requires_grad}
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.optimizers[0].defaults["fused"] is fused
    assert any(not torch.equal(before[n], p) for n, p in module.model.named_parameters() if n in before)
