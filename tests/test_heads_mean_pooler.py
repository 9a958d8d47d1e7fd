"""``pooler='mean'``: the head reads the masked mean of the token states (tiny random BERT)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from pet_lightning import PETModule
from pet_lightning.backbones import build_from_config
from pet_lightning.data import GlueDataModule, SuperGlueDataModule
from pet_lightning.feature_cache import FeatureCache
from pet_lightning.heads import HeadError, MeanPooling, install_head, masked_mean
from pet_lightning.strategies.base import backbone_of, unwrap
from pet_lightning.tasks import get_task
from tests.helpers.backbones import tiny_configs


def _padded(batch: int = 3, length: int = 8) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 100, (batch, length), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([length, 5, 2, 6][:batch]).view(-1, 1)
    mask = (torch.arange(length) < lengths).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


def _bert(task: str = "rte"):
    torch.manual_seed(0)
    return build_from_config(tiny_configs()["bert"], get_task(task)).eval()


def test_pooled_vector_is_the_hand_mean_over_the_unpadded_tokens():
    model = install_head(_bert(), get_task("rte"), pooler="mean")
    encoder = backbone_of(model)
    assert isinstance(encoder.pooler, MeanPooling) and list(encoder.pooler.parameters()) == []
    batch = _padded()
    with torch.no_grad():
        out = encoder(**batch)
        logits = model(**batch).logits
    hidden = out.last_hidden_state
    for row, length in enumerate((8, 5, 2)):
        expected = hidden[row, :length].sum(0) / length
        assert torch.allclose(out.pooler_output[row], expected, atol=1e-6)
        # Not the mean over every position: the padded ones are left out.
        assert not torch.allclose(out.pooler_output[row], hidden[row].mean(0), atol=1e-4) or length == 8
    assert torch.allclose(logits, model.classifier(out.pooler_output), atol=1e-6)
    assert encoder.pooler.mask is None  # no batch's mask is kept after its forward


def test_masked_mean_without_a_mask_and_with_a_prefix_mask():
    hidden = torch.arange(24, dtype=torch.float).view(2, 3, 4)
    assert torch.equal(masked_mean(hidden, None), hidden.mean(1))
    # Prefix tuning prepends 2 virtual tokens' mask columns: only the last 3 columns describe the hidden states.
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    assert torch.allclose(masked_mean(hidden, mask), torch.stack([hidden[0, :2].mean(0), hidden[1, :1].mean(0)]))


def test_multiple_choice_and_the_mlp_head_read_the_masked_mean():
    spec = get_task("copa")
    model = install_head(_bert("copa"), spec, "mlp", hidden_size=8, init_std=0.02, pooler="mean")
    flat = _padded(batch=4)
    batch = {key: value.view(2, 2, -1) for key, value in flat.items()}
    with torch.no_grad():
        logits = model(**batch).logits
        pooled = backbone_of(model)(**flat).pooler_output
    assert logits.shape == (2, 2)
    assert torch.allclose(logits.view(-1), model.classifier(pooled).view(-1), atol=1e-6)


def test_module_with_mean_pooler_keeps_it_in_the_pretrained_model_and_the_feature_cache(tiny):
    module = PETModule(backbone=tiny, task="rte", strategy="frozen", init_seed=0, pooler="mean").eval()
    assert isinstance(backbone_of(unwrap(module.model)).pooler, MeanPooling)
    assert not any("pooler" in name for name, _ in module.model.named_parameters())
    assert isinstance(backbone_of(module.pretrained_model()).pooler, MeanPooling)
    # The cache stores the pooler's output (the mean), so cached logits equal the full model's, padding included.
    batch = {**_padded(), "idx": torch.arange(3)}
    inputs = {k: v for k, v in batch.items() if k != "idx"}
    cache = FeatureCache()
    with torch.no_grad():
        cached = cache.logits(module.model, inputs, batch["idx"], "train")
        full = module.model(**inputs).logits
    assert cache.checked and torch.allclose(cached, full, atol=1e-5)


@pytest.mark.parametrize(("task", "strategy"), [("rte", "lora"), ("copa", "bitfit"), ("rte", "prefix")])
def test_a_few_steps_fit_with_the_mean_pooler(tiny, data_dir, task, strategy):
    module = PETModule(backbone=tiny, task=task, strategy={"name": strategy, **(
        {"num_virtual_tokens": 4} if strategy == "prefix" else {})}, init_seed=0, learning_rate=1e-2,
        head="mlp", head_hidden_size=16, pooler="mean")
    data_class = SuperGlueDataModule if task == "copa" else GlueDataModule
    datamodule = data_class(task=task, data_dir=data_dir, backbone=tiny, max_length=32, batch_size=4,
                            train_subset=16, order_seed=0)
    head_before = {k: v.clone() for k, v in module.model.named_parameters() if v.requires_grad}
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                        num_sanity_val_steps=0, precision="32-true")
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 3
    after = dict(module.model.named_parameters())
    assert any(not torch.equal(after[k], v) for k, v in head_before.items())
    assert torch.isfinite(trainer.callback_metrics["train/loss"]).item()


def test_a_bert_without_its_pooler_cannot_mean_pool():
    model = _bert()
    backbone_of(model).pooler = None
    with pytest.raises(HeadError, match="pooler='mean'.*use pooler='pretrained'"):
        install_head(model, get_task("rte"), pooler="mean")


def test_a_deep_copy_pools_with_its_own_mask():
    import copy

    model = install_head(_bert(), get_task("rte"), pooler="mean")
    twin = copy.deepcopy(model)
    hook = next(iter(backbone_of(twin)._forward_pre_hooks.values()))
    assert hook.__self__ is backbone_of(twin).pooler  # not the original's pooler
    batch = _padded()
    with torch.no_grad():
        assert torch.allclose(twin(**batch).logits, model(**batch).logits, atol=1e-6)
