"""Options that reproduce the studies' own code at the paper scale (issue 36): Mixout on the head, the Pfeiffer
adapter reading the normalised output, Child-Tuning's Fisher with dropout and per-tensor clipping, and the
Revisiting code's selection split (the last 10% of the train file)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import BertConfig

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.backbones import build_from_config
from pet_lightning.callbacks.child_tuning import fisher_scores
from pet_lightning.strategies import StrategyError, build_strategy
from pet_lightning.strategies.adapter import AdaptedLinear, AdaptedOutput
from pet_lightning.strategies.base import backbone_of, head_parameters
from pet_lightning.strategies.mixout import TARGET
from pet_lightning.tasks import get_task
from tests.helpers.backbones import tiny_model


def _head_modules(model: nn.Module) -> list[nn.Module]:
    inside = {id(m) for m in backbone_of(model).modules()}
    return [m for m in model.modules() if id(m) not in inside and m is not model]


@pytest.mark.parametrize("include_head", [False, True])
def test_mixout_include_head_mixes_the_head_toward_its_initial_values(include_head):
    model = tiny_model("roberta")
    strategy = build_strategy({"name": "mixout", "p": 0.7, "include_head": include_head})
    head_linears = [m for m in _head_modules(model) if isinstance(m, nn.Linear)]
    head_dropouts = [m for m in _head_modules(model) if isinstance(m, nn.Dropout)]
    initial = [m.weight.detach().clone() for m in head_linears]
    report = strategy.apply(model)
    assert head_linears and head_dropouts
    assert all(hasattr(m, TARGET) == include_head for m in head_linears)
    assert all((m.p == 0.0) == include_head for m in head_dropouts)
    if include_head:
        assert all(torch.equal(getattr(m, TARGET), w) for m, w in zip(head_linears, initial))
        # In training, p = 0.7 of the head's elements are swapped for their initial values at each step.
        with torch.no_grad():
            for m in head_linears:
                m.weight.add_(1.0)
        model.train()
        x = torch.randn(4, head_linears[-1].in_features)
        assert not torch.equal(head_linears[-1](x), head_linears[-1](x))
    report.remove()
    assert not any(hasattr(m, TARGET) for m in model.modules())
    assert all(m.p == 0.1 for m in head_dropouts)


def _tiny_bert() -> nn.Module:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    return build_from_config(config, get_task("rte")).eval()


def test_the_normalised_pfeiffer_adapter_reads_the_layers_normalised_output():
    model = _tiny_bert()
    block = backbone_of(model).encoder.layer[0].output
    x, hidden = torch.randn(2, 5, 32), torch.randn(2, 5, 16)
    plain = block(x, hidden)
    strategy = build_strategy({"name": "adapter", "style": "pfeiffer", "reduction_factor": 4,
                               "placement": "normalised", "init_std": 0.02})
    report = strategy.apply(model)
    wrapped = backbone_of(model).encoder.layer[0].output
    assert isinstance(wrapped, AdaptedOutput) and wrapped.base is block
    assert not any(isinstance(m, AdaptedLinear) for m in model.modules())
    with torch.no_grad():
        adapter, norm = wrapped.adapter, block.LayerNorm
        h = block.dense(x)
        delta = adapter.up(adapter.act(adapter.down(norm(h + hidden))))
        assert torch.allclose(wrapped(x, hidden), norm(h + delta + hidden), atol=1e-6)
        adapter.up.weight.zero_()  # a zero adapter gives the pretrained layer back
        assert torch.allclose(wrapped(x, hidden), plain, atol=1e-6)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if ".adapter." in n} | set(head_parameters(model))
    report.remove()
    assert backbone_of(model).encoder.layer[0].output is block
    with pytest.raises(StrategyError, match="normalised with style pfeiffer"):
        build_strategy({"name": "adapter", "style": "houlsby", "placement": "normalised"})


def _fisher_module(tiny: str) -> tuple[PETModule, list[dict[str, torch.Tensor]], list[str]]:
    module = PETModule(backbone=tiny, task="rte", strategy={"name": "child_tuning_d", "reserve_p": 0.1}, init_seed=0)
    gen = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(3, 1000, (4, 12), generator=gen),
                "attention_mask": torch.ones(4, 12, dtype=torch.long),
                "label": torch.randint(0, 2, (4,), generator=gen)} for _ in range(3)]
    return module, batches, module.strategy.masked_names(module.model)


def test_fisher_with_dropout_is_reproducible_from_its_seed_and_differs_from_eval_mode(tiny):
    module, batches, names = _fisher_module(tiny)
    eval_mode = fisher_scores(module, batches, names, None)
    state = torch.random.get_rng_state()
    first = fisher_scores(module, batches, names, None, dropout=True, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # training's random stream is untouched
    again = fisher_scores(module, batches, names, None, dropout=True, seed=3)
    assert all(torch.equal(first[n], again[n]) for n in names)
    assert any(not torch.equal(first[n], eval_mode[n]) for n in names)
    assert module.training  # the module's mode is restored


def test_fisher_clips_each_tensors_gradient_before_squaring(tiny):
    module, batches, names = _fisher_module(tiny)
    plain = fisher_scores(module, batches, names, None)
    clip = 1e-4
    clipped = fisher_scores(module, batches, names, None, max_grad_norm=clip)
    # Each batch adds at most clip**2 per tensor (its clipped gradient's squared norm).
    assert all(float(clipped[n].sum()) <= len(batches) * clip**2 * (1 + 1e-4) for n in names)
    assert any(float(plain[n].sum()) > len(batches) * clip**2 for n in names)


def test_train_holdout_tail_selects_on_the_last_tenth_of_the_train_file(data_dir, tiny):
    dm = GlueDataModule(task="rte", data_dir=data_dir, backbone=tiny, protocol="train_holdout_tail")
    plan = dm.plan_splits()
    examples = dm.load_examples("train")
    cut = len(examples) - -(-len(examples) // 10)  # ceil(10%), as Hugging Face's train_test_split
    (selection,) = plan.selection.values()
    assert [e["idx"] for e in selection] == [e["idx"] for e in examples[cut:]]
    assert [e["idx"] for e in plan.train] == [e["idx"] for e in examples[:cut]]
    assert "last 10% of the train file" in plan.description
