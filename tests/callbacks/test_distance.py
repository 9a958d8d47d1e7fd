"""Distance from the pretrained weights: zero when frozen, the bias change for BitFit, the merged update for LoRA."""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from pet_lightning import PETModule
from pet_lightning.backbones import load_backbone
from pet_lightning.callbacks import PretrainedDistance, RunSummary, TwoStageTraining
from pet_lightning.strategies.base import backbone_of
from pet_lightning.tasks import get_task
from tests.helpers.data import rte_data


def _fit(tmp_path, data_dir: str, strategy: str, callbacks=(), **kwargs) -> tuple[PETModule, PretrainedDistance]:
    L.seed_everything(0)
    distance = PretrainedDistance()
    module = PETModule(task="rte", strategy=strategy, learning_rate=1e-2, warmup_ratio=0.0, init_seed=0)
    settings = dict(accelerator="cpu", devices=1, precision="32-true", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                    limit_val_batches=0, default_root_dir=tmp_path, max_epochs=1,
                    callbacks=[*callbacks, distance, RunSummary()])
    L.Trainer(**{**settings, **kwargs}).fit(module, datamodule=rte_data(data_dir))
    return module, distance


def _pretrained() -> dict[str, torch.Tensor]:
    return dict(backbone_of(load_backbone("minilm", get_task("rte"))).named_parameters())


def test_frozen_is_exactly_zero_and_bitfit_is_the_change_of_the_biases(tmp_path, data_dir, capsys):
    _, frozen = _fit(tmp_path / "frozen", data_dir, "frozen")
    assert frozen.distance.total == 0.0 and frozen.distance.rest == 0.0
    assert set(frozen.distance.layers) == set(range(6)) and set(frozen.distance.layers.values()) == {0.0}
    assert "distance_l2=0 " in capsys.readouterr().out

    module, bitfit = _fit(tmp_path / "bitfit", data_dir, "bitfit", logger=CSVLogger(tmp_path, name="csv"))
    pretrained, trained = _pretrained(), dict(backbone_of(module.model).named_parameters())
    squares = {name: float((trained[name].detach().double() - p.double()).pow(2).sum())
               for name, p in pretrained.items()}
    assert all(value == 0.0 for name, value in squares.items() if not name.endswith("bias"))
    by_hand = math.sqrt(sum(squares.values()))
    assert by_hand > 0
    assert math.isclose(bitfit.distance.total, by_hand, rel_tol=1e-12)
    layer_2 = math.sqrt(sum(v for name, v in squares.items() if name.startswith("encoder.layer.2.")))
    assert math.isclose(bitfit.distance.layers[2], layer_2, rel_tol=1e-12)
    rest = math.sqrt(sum(v for name, v in squares.items() if not name.startswith("encoder.layer.")))
    assert math.isclose(bitfit.distance.rest, rest, rel_tol=1e-12)
    assert f"distance_l2={bitfit.distance.total:.6g}" in capsys.readouterr().out
    logged = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "distance/total" in logged and "distance/layer_5" in logged


def test_lora_counts_its_merged_update_and_two_stage_measures_from_pretrained(tmp_path, data_dir):
    module, lora = _fit(tmp_path / "lora", data_dir, "lora")
    # peft's own delta of every LoRA layer (scale * B @ A), summed: the change merging would make.
    deltas = [m.get_delta_weight("default") for m in module.model.modules() if hasattr(m, "get_delta_weight")]
    by_hand = math.sqrt(sum(float(d.double().pow(2).sum()) for d in deltas))
    assert by_hand > 0 and math.isclose(lora.distance.total, by_hand, rel_tol=1e-5)
    assert lora.distance.rest == 0.0  # LoRA targets the attention layers only

    # BitFit in stage 1 moves biases; the switch restores the pretrained backbone and stage 2 trains nothing in it.
    switch = TwoStageTraining(stage2_strategy="frozen", stage1_epochs=1)
    _, two_stage = _fit(tmp_path / "two", data_dir, "bitfit", callbacks=[switch], max_epochs=2)
    assert switch.stage == 2 and two_stage.distance.total == 0.0
