"""``pooler='first_token'``: the encoder's pooler becomes a parameter-free first-token pick (tiny random BERT)."""

from __future__ import annotations

import pytest
import torch

from pet_lightning import PETModule
from pet_lightning.backbones import build_from_config
from pet_lightning.heads import FirstToken, HeadError, bypass_pooler, install_head
from pet_lightning.strategies.base import backbone_of, unwrap
from pet_lightning.tasks import get_task
from tests.helpers.backbones import tiny_configs


def _inputs(batch: int = 3, length: int = 7) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 100, (batch, length), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _tiny_bert(task: str = "rte"):
    torch.manual_seed(0)
    return build_from_config(tiny_configs()["bert"], get_task(task))


def test_bypass_pooler_gives_the_first_tokens_hidden_state_with_no_parameters():
    model = _tiny_bert()
    assert any("pooler" in name for name, _ in model.named_parameters())
    assert bypass_pooler(model) is model
    encoder = backbone_of(model)
    assert isinstance(encoder.pooler, FirstToken)
    assert list(encoder.pooler.parameters()) == []
    assert not any("pooler" in name for name, _ in model.named_parameters())
    model.eval()
    with torch.no_grad():
        out = encoder(**_inputs())
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])
    # The classifier reads it: logits are the classifier applied to the first token's hidden state.
    with torch.no_grad():
        logits = model(**_inputs()).logits
        assert torch.allclose(logits, model.classifier(out.last_hidden_state[:, 0]))


def test_install_head_with_first_token_also_works_with_the_mlp():
    spec = get_task("stsb")
    model = install_head(_tiny_bert("stsb"), spec, "mlp", hidden_size=8, init_std=0.02, pooler="first_token")
    assert isinstance(backbone_of(model).pooler, FirstToken)
    with torch.no_grad():
        assert model(**_inputs()).logits.shape == (3, 1)


def test_module_with_first_token_has_no_pooler_parameters_and_pretrained_model_bypasses_too(tiny):
    bypassed = PETModule(backbone=tiny, task="rte", strategy="full", init_seed=0, pooler="first_token")
    names = {name for name, _ in bypassed.model.named_parameters()}
    assert not any("pooler" in n for n in names)
    assert not any("pooler" in n for n in bypassed.report.trainable_names)
    assert not any("pooler" in n for n in bypassed.report.head_names)
    assert isinstance(backbone_of(unwrap(bypassed.model)).pooler, FirstToken)
    fresh = bypassed.pretrained_model()
    assert isinstance(backbone_of(fresh).pooler, FirstToken)
    assert not any("pooler" in n for n, _ in fresh.named_parameters())

    # The default keeps the pretrained pooler, which trains under full fine-tuning.
    kept = PETModule(backbone=tiny, task="rte", strategy="full", init_seed=0)
    assert any("pooler" in n for n in kept.report.trainable_names)
    assert not isinstance(backbone_of(unwrap(kept.model)).pooler, FirstToken)
    # Parameter counts differ by exactly the pooler's dense layer (hidden 32: 32*32 + 32).
    count = sum(p.numel() for p in kept.model.parameters()) - sum(p.numel() for p in bypassed.model.parameters())
    assert count == 32 * 32 + 32


def test_bad_pooler_value_raises_head_error_naming_the_choices(tiny):
    with pytest.raises(HeadError, match="pretrained, first_token, mean") as err:
        PETModule(backbone=tiny, task="rte", pooler="cls")
    assert "\n" not in str(err.value)
    with pytest.raises(HeadError, match="pooler='max'"):
        install_head(_tiny_bert(), get_task("rte"), pooler="max")


@pytest.mark.parametrize("family", ["roberta", "distilbert"])
def test_a_model_without_a_pooler_raises_head_error(family):
    torch.manual_seed(0)
    model = build_from_config(tiny_configs()[family], get_task("rte"))
    assert getattr(backbone_of(model), "pooler", None) is None
    with pytest.raises(HeadError, match="no pooler to bypass"):
        bypass_pooler(model)


def test_a_bert_with_its_pooler_removed_raises_head_error():
    model = _tiny_bert()
    backbone_of(model).pooler = None
    with pytest.raises(HeadError, match="pooler='pretrained'"):
        install_head(model, get_task("rte"), pooler="first_token")
