"""The EH-FT paper scale on RoBERTa, on a tiny random RoBERTa saved without a pooler (as roberta-large ships):
the MLP head reads the first token, the stage switch changes the head only as ``keep_head_bias`` says, and prefix
tuning fits at the longest input the position table allows (issue 36, items 4 and 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import RobertaConfig, RobertaModel

from pet_lightning import PETModule
from pet_lightning.callbacks import TwoStageTraining
from pet_lightning.heads import FirstToken, MLPHead
from pet_lightning.strategies import StrategyError
from pet_lightning.strategies.base import backbone_of, head_parameters, unwrap

# 22 positions: RoBERTa numbers them from padding_idx + 1 = 2, so 20 tokens fit; behind a 5-token prefix, 15.
POSITIONS, PREFIX = 22, 5


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory) -> str:
    """A 2-layer, 32-wide random RoBERTa saved without pooler weights (like roberta-large's checkpoint)."""
    folder = tmp_path_factory.mktemp("tiny") / "roberta"
    config = RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=POSITIONS, pad_token_id=1)
    torch.manual_seed(0)
    RobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    return str(folder)


def _module(backbone: str, task: str, **kwargs) -> PETModule:
    settings = {"head": "mlp", "head_hidden_size": 8, "init_seed": 0, **kwargs}
    return PETModule(backbone=backbone, task=task, **settings)


def _inputs(batch: int, length: int, choices: int | None = None) -> dict[str, torch.Tensor]:
    shape = (batch, choices, length) if choices else (batch, length)
    ids = torch.randint(3, 100, shape, generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize(("task", "pooler"), [("rte", "pretrained"), ("copa", "first_token")])
def test_the_mlp_head_reads_the_first_token(tiny_roberta, task, pooler):
    module = _module(tiny_roberta, task, pooler=pooler).eval()
    hf = unwrap(module.model)
    assert isinstance(hf.classifier, MLPHead)
    choices = 2 if task == "copa" else None
    batch = _inputs(3, 7, choices)
    with torch.no_grad():
        flat = {k: v.view(-1, v.shape[-1]) for k, v in batch.items()}
        first = backbone_of(hf)(**flat).last_hidden_state[:, 0]
        expected = hf.classifier(first).view(3, -1)
        assert torch.allclose(module(batch), expected, atol=1e-6)
    if task == "copa":
        # The multiple-choice model's random pooler is gone: nothing untrained stands between encoder and head.
        assert isinstance(backbone_of(hf).pooler, FirstToken)


@pytest.mark.parametrize("keep_head_bias", [True, False])
@pytest.mark.parametrize("pooler", ["pretrained", "first_token"])
def test_the_switch_changes_the_head_only_as_keep_head_bias_says(tiny_roberta, keep_head_bias, pooler):
    """COPA on a RoBERTa without pooler weights: with pooler 'pretrained' the pooler is random (not in the
    checkpoint); the switch must leave it as stage 1 read it, whatever the global random state is by then."""
    module = _module(tiny_roberta, "copa", strategy="bitfit", pooler=pooler)
    hf = unwrap(module.model)
    built = {n: p.detach().clone() for n, p in backbone_of(hf).named_parameters() if "pooler" in n}
    assert bool(built) == (pooler == "pretrained")
    with torch.no_grad():  # stage 1 trained the head and the backbone's biases
        for p in head_parameters(hf).values():
            p.add_(0.5)
        for n, p in backbone_of(hf).named_parameters():
            if n.endswith("bias"):
                p.add_(0.25)
    trained_head = {n: p.detach().clone() for n, p in head_parameters(hf).items()}
    torch.manual_seed(1234)  # the global stream has moved on since the build
    callback = TwoStageTraining(keep_head_bias=keep_head_bias)
    plain = module.report.remove()
    callback.restore_pretrained(module, plain)
    after_backbone = dict(backbone_of(plain).named_parameters())
    for name, value in built.items():  # the pooler stage 1 read, as built (BitFit's change to its bias undone)
        assert torch.equal(after_backbone[name], value), name
    for name, param in head_parameters(plain).items():
        if keep_head_bias or not name.endswith("bias"):
            assert torch.equal(param, trained_head[name]), name
        else:  # a fresh MLP head's bias: zero
            assert torch.equal(param, torch.zeros_like(param)), name
    # Everything the checkpoint holds is back to its pretrained value.
    fresh = _module(tiny_roberta, "copa", pooler=pooler)
    for name, value in backbone_of(unwrap(fresh.model)).named_parameters():
        assert torch.equal(after_backbone[name], value), name


def test_prefix_fits_at_the_longest_input_and_one_more_token_is_refused(tiny_roberta):
    module = _module(tiny_roberta, "rte", strategy={"name": "prefix", "num_virtual_tokens": PREFIX,
                                                     "init_std": 0.01}).eval()
    longest = POSITIONS - 2 - PREFIX
    module.strategy.check_run(module.model, max_length=longest)
    with torch.no_grad():
        assert module(_inputs(2, longest)).shape == (2, 2)
    with pytest.raises(StrategyError, match=f"use max_length <= {longest}"):
        module.strategy.check_run(module.model, max_length=longest + 1)
    # What the check prevents: position ids shifted by the prefix run off the table.
    with pytest.raises((IndexError, RuntimeError)), torch.no_grad():
        module(_inputs(2, longest + 1))


def test_prefix_init_std_redraws_the_prefix_embedding(tiny_roberta):
    def prefix_std(init_std: float | None) -> float:
        strategy = {"name": "prefix", "num_virtual_tokens": 16, "init_std": init_std}
        module = _module(tiny_roberta, "rte", strategy=strategy)
        (weight,) = [p for n, p in module.model.named_parameters() if "prompt_encoder" in n]
        return float(weight.std())

    assert prefix_std(0.01) == pytest.approx(0.01, rel=0.2)
    assert prefix_std(None) == pytest.approx(1.0, rel=0.2)  # peft's nn.Embedding init
    with pytest.raises(StrategyError, match="init_std"):
        _module(tiny_roberta, "rte", strategy={"name": "prefix", "init_std": 0.0})


def test_the_paper_scale_cuts_prefix_inputs_to_fit_roberta_large():
    from pet_lightning.strategies import build_strategy
    from pet_lightning.sweeps.plan import SweepConfig, plan_runs

    root = Path(__file__).resolve().parents[1]
    runs = plan_runs(SweepConfig.from_file(root / "configs/studies/eh_ft_table1.yaml", "paper"))
    for run in runs:
        strategy = build_strategy(run.config["model"]["strategy"]).config_dict()
        if strategy["name"] == "prefix":
            # roberta-large: 514 positions from 2, 17 prefix tokens -> 495 (their finetune_roberta.py:264-265).
            assert run.config["data"]["init_args"]["max_length"] == 514 - 2 - 17 == 495, run.run_id
            assert strategy["init_std"] == 0.01
