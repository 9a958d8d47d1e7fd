"""random on the real MiniLM: element masks drawn with the init seed; unchosen elements never move; compact
checkpoints that reload and resume exactly."""

from __future__ import annotations

import pytest
import torch

from pet_lightning import PETModule
from pet_lightning.strategies import build_strategy
from tests.helpers.backbones import HIDDEN, MINILM_LAYERS, MINILM_TOTAL
from tests.helpers.resume import check_reload_and_resume
from tests.strategies.conftest import HEAD, train_briefly

LAYERNORM_COUNT = MINILM_LAYERS * 2 * 2 * HIDDEN  # what `layernorm` trains on MiniLM: 9216


def test_default_count_equals_layernorm_count_and_masks_are_consistent(minilm):
    torch.manual_seed(0)
    report = build_strategy("random").apply(minilm)
    assert report.trainable == LAYERNORM_COUNT == 9216
    assert round(report.percent, 2) == round(100 * 9216 / MINILM_TOTAL, 2)
    assert sum(int(m.sum()) for m in report.masks.values()) == LAYERNORM_COUNT
    assert all(m.any() for m in report.masks.values())
    parameters = dict(minilm.named_parameters())
    assert all(report.masks[n].shape == parameters[n].shape for n in report.masks)
    assert set(report.trainable_names) == set(report.masks) | HEAD


def test_count_fraction_and_layers(minilm):
    torch.manual_seed(0)
    assert build_strategy("random", count=1000).apply(minilm).trainable == 1000
    whole = build_strategy("random", fraction=0.001, include_embeddings=True).apply(minilm)
    assert whole.trainable == round(0.001 * MINILM_TOTAL)
    report = build_strategy("random", layers=[0]).apply(minilm)
    assert report.trainable == 2 * 2 * HIDDEN  # layernorm's count on layer 0
    assert all(n.startswith("bert.encoder.layer.0.") for n in report.masks)
    with pytest.raises(Exception, match="count=99999999 exceeds the 10646784 parameters"):
        build_strategy("random", count=99_999_999).apply(minilm)


def test_the_init_seed_decides_the_draw():
    masks = [PETModule(task="rte", strategy="random", init_seed=seed).report.masks for seed in (7, 7, 8)]
    assert masks[0].keys() == masks[1].keys() and all(torch.equal(masks[0][n], masks[1][n]) for n in masks[0])
    assert masks[0].keys() != masks[2].keys() or any(not torch.equal(masks[0][n], masks[2][n]) for n in masks[0])


def test_training_moves_only_chosen_elements_bitwise_under_adamw_weight_decay(data_dir, tmp_path):
    module, before, changed = train_briefly(data_dir, tmp_path, "random", learning_rate=1e-2, weight_decay=0.1)
    masks = module.report.masks
    after = dict(module.model.named_parameters())
    assert changed <= set(masks) | HEAD
    moved_outside_embeddings, chosen_outside_embeddings = 0, 0
    for name, mask in masks.items():
        moved = before[name] != after[name].detach()
        assert not moved[~mask].any(), f"{name}: an unchosen element changed"
        assert torch.equal(before[name][~mask], after[name].detach()[~mask])
        if not name.startswith("bert.embeddings."):  # most embedding rows see no token of the batch
            moved_outside_embeddings += int(moved.sum())
            chosen_outside_embeddings += int(mask.sum())
    assert moved_outside_embeddings >= 0.95 * chosen_outside_embeddings > 0
    for name in set(before) - set(masks) - HEAD:
        assert torch.equal(before[name], after[name].detach()), name


def test_checkpoint_holds_only_chosen_values_and_reload_and_resume_reproduce_exactly(data_dir, tmp_path):
    size = check_reload_and_resume(data_dir, tmp_path, "random")
    stored = torch.load(tmp_path / "epoch1.ckpt", weights_only=False)
    info = stored["pet_lightning"]
    assert set(stored["state_dict"]) == {"model.classifier.weight", "model.classifier.bias"}
    assert sum(v.numel() for v in info["masked_values"].values()) == LAYERNORM_COUNT
    assert sum(m["index"].numel() for m in info["masks"].values()) == LAYERNORM_COUNT
    packed = [s for opt in info["packed_optimizer_states"].values() for _, s in opt.values()]
    assert packed and all(keys == ["exp_avg", "exp_avg_sq"] for keys in packed)
    assert size < 1_000_000, size
    other_seed = PETModule(task="rte", strategy="random", init_seed=1)
    with pytest.raises(ValueError, match="differs from the checkpoint's: build the module with the same init_seed"):
        other_seed.on_load_checkpoint(stored)


def test_by_default_the_draw_skips_embeddings_and_pooler(minilm):
    # About half of MiniLM's scalars are word embeddings; a default draw lands only in the transformer layers.
    torch.manual_seed(0)
    report = build_strategy("random", count=200_000).apply(minilm)
    assert report.trainable == 200_000
    assert report.masks and all(n.startswith("bert.encoder.layer.") for n in report.masks)
    encoder = sum(p.numel() for n, p in minilm.named_parameters() if n.startswith("bert.encoder.layer."))
    assert build_strategy("random", fraction=0.01).apply(minilm).trainable == round(0.01 * encoder)
    torch.manual_seed(0)
    whole = build_strategy("random", count=200_000, include_embeddings=True).apply(minilm)
    assert any(n.startswith("bert.embeddings.") for n in whole.masks)
    with pytest.raises(Exception, match="include_embeddings draws from the whole backbone"):
        build_strategy("random", layers=[0], include_embeddings=True)


def test_gradient_masks_follow_a_dtype_and_device_move(minilm):
    from pet_lightning.strategies.base import GradientMask

    torch.manual_seed(0)
    report = build_strategy("random", count=5000).apply(minilm)
    minilm.double()  # moved after apply, as Lightning moves a module to its device
    batch = torch.randint(0, 1000, (2, 8))
    minilm(input_ids=batch).logits.sum().backward()
    for name, param in minilm.named_parameters():
        if name in report.masks:
            assert param.grad.dtype == torch.float64
            assert not param.grad[~report.masks[name]].any(), name
    # A gradient on another device (meta stands in for a GPU here) gets the mask on that device.
    hook = GradientMask(torch.tensor([True, False, True]))
    out = hook(torch.ones(3, device="meta"))
    assert out.device.type == "meta" and hook.mask.device.type == "meta"
    assert torch.equal(GradientMask(torch.tensor([True, False]))(torch.ones(2)), torch.tensor([1.0, 0.0]))
