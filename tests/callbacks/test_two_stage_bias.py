"""Two-stage training without the stage-1 biases: a ``label_mean`` regression head restarts at the label mean."""

from __future__ import annotations

import pytest
import torch

from pet_lightning import PETModule
from pet_lightning.callbacks import TwoStageTraining
from pet_lightning.heads import MLPHead
from pet_lightning.strategies.base import unwrap
from tests.helpers.data import small_glue
from tests.helpers.probes import HeadAtBoundary
from tests.helpers.trainers import quiet_trainer


@pytest.mark.parametrize("regression_bias", ["label_mean", "zero"])
def test_reset_biases_restart_at_the_label_mean_and_weights_are_copied(tmp_path, data_dir, tiny, regression_bias):
    dm = small_glue(data_dir, "stsb", backbone=tiny)
    module = PETModule(backbone=tiny, task="stsb", strategy="bitfit", head="mlp", head_hidden_size=8,
                       learning_rate=1e-2, warmup_ratio=0.0, init_seed=0, regression_bias=regression_bias)
    probe = HeadAtBoundary()
    callback = TwoStageTraining(stage1_epochs=1, keep_head_bias=False, learning_rate=1e-3)
    trainer = quiet_trainer(tmp_path, precision="32-true", limit_val_batches=0, max_epochs=2,
                            callbacks=[callback, probe])
    trainer.fit(module, datamodule=dm)
    labels = [float(example["label"]) for example in dm.plan.train]
    mean = sum(labels) / len(labels)
    expected_out_bias = torch.full((1,), mean if regression_bias == "label_mean" else 0.0)

    start, stage1, stage2 = probe.seen["start"], probe.seen["stage1"], probe.seen["stage2"]
    assert set(stage2) == {"dense.weight", "dense.bias", "out_proj.weight", "out_proj.bias"}
    assert torch.equal(start["out_proj.bias"], expected_out_bias)
    # Stage 1 moved every head tensor, so the checks below tell copied from reset.
    for name in stage1:
        assert not torch.equal(stage1[name], start[name]), f"stage 1 must move {name} for this to test anything"
    # The weights are the stage-1 head's ...
    for name in ("dense.weight", "out_proj.weight"):
        assert torch.equal(stage2[name], stage1[name])
    # ... the hidden bias is a fresh MLP's (zero) and the output bias restarts where the option puts it.
    assert torch.count_nonzero(stage2["dense.bias"]) == 0
    assert torch.equal(stage2["out_proj.bias"], expected_out_bias)
    assert not torch.equal(stage2["out_proj.bias"], stage1["out_proj.bias"])
    assert callback.stage == 2 and module.strategy.name == "full"
    assert isinstance(unwrap(module.model).classifier, MLPHead)
