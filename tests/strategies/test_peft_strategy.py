"""The ``peft`` strategy (any peft config) and what every peft preset shares: one code path, literature counts on
architectures built from configs, LoRA initialisations, LoRA+ groups, one-line errors, IA3's targets and the same
token types for every method on COPA."""

from __future__ import annotations

import copy
import functools
import json

import lightning as L
import pytest
import torch
from peft import LoraConfig
from transformers import BertConfig, RobertaConfig

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.backbones import build_from_config, load_backbone
from pet_lightning.lightning_cli import fit_summary as run_config
from pet_lightning.strategies import StrategyError, build_strategy
from pet_lightning.tasks import get_task
from tests.helpers.backbones import HIDDEN, MINILM_LAYERS, tiny_configs, tiny_model
from tests.helpers.trainers import quiet_trainer, real_fit_overrides

ROBERTA_LAYERS, ROBERTA_HIDDEN = 12, 768
LORA_R8_QV = ROBERTA_LAYERS * 2 * (8 * ROBERTA_HIDDEN + ROBERTA_HIDDEN * 8)  # 294,912: the LoRA paper's count


@functools.cache
def _roberta_base():
    return build_from_config(RobertaConfig(), get_task("rte"))


def roberta_base():
    """A fresh roberta-base built from its config (no download); copied, since initialising 125M weights is slow."""
    return copy.deepcopy(_roberta_base())


def test_dora_vera_adalora_counts_on_roberta_base():
    # DoRA: LoRA's A and B plus one magnitude per output feature of each adapted layer.
    assert build_strategy("dora", r=8).apply(roberta_base()).trainable == LORA_R8_QV + 12 * 2 * 768 == 313_344
    # VeRA: per layer d (r) and b (out_features) train; the shared random matrices are frozen buffers.
    vera = build_strategy("vera", r=256).apply(roberta_base())
    assert vera.trainable == 12 * 2 * (256 + 768) == 24_576
    assert not any("vera_A" in n or "vera_B" in n for n in vera.trainable_names)
    # AdaLoRA starts at init_r: P (init_r x 768), Q (768 x init_r) and E (init_r) per adapted layer.
    adalora = build_strategy("adalora", init_r=12, target_r=8).apply(roberta_base())
    assert adalora.trainable == 12 * 2 * (12 * 768 + 768 * 12 + 12) == 442_656
    for report in (vera, adalora):
        assert report.total == sum(p.numel() for p in _roberta_base().roberta.parameters())


def test_vera_shared_matrices_are_regenerated_from_their_seed():
    first = build_strategy("vera", r=16).apply(tiny_model("bert")).model
    second = build_strategy("vera", r=16).apply(tiny_model("bert")).model
    buffers = {n: b for n, b in first.named_buffers() if "vera_A" in n or "vera_B" in n}
    assert buffers and all(torch.equal(b, dict(second.named_buffers())[n]) for n, b in buffers.items())
    other = build_strategy("vera", r=16, projection_prng_key=1).apply(tiny_model("bert")).model
    assert not all(torch.equal(b, dict(other.named_buffers())[n]) for n, b in buffers.items())


def test_a_peft_config_object_a_dict_and_the_lora_preset_are_one_path(minilm):
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"])
    from_object = build_strategy("peft", config=config)
    spec = {"class_path": "peft.LoraConfig",
            "init_args": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["value", "query"]}}
    from_dict = build_strategy({"name": "peft", "config": spec})
    # Canonical and JSON-serialisable: checkpoints store it and compare it on load.
    stored = json.loads(json.dumps(from_object.config_dict()))
    assert stored == from_dict.config_dict() == build_strategy(stored).config_dict()
    assert stored["config"] == {
        "class_path": "peft.LoraConfig",
        "init_args": {"lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"]},
    }
    other = load_backbone("minilm", get_task("rte"))
    torch.manual_seed(0)
    generic = from_object.apply(minilm)
    torch.manual_seed(0)
    preset = build_strategy("lora", r=8, alpha=16, dropout=0.1).apply(other)
    assert generic.trainable_names == preset.trainable_names
    assert generic.as_dict() | {"strategy": "lora"} == preset.as_dict()
    preset_params = dict(preset.model.named_parameters())
    assert all(torch.equal(p, preset_params[n]) for n, p in generic.model.named_parameters() if "lora_" in n)


def test_a_peft_config_in_yaml_trains_from_the_command_line(tmp_path, data_dir, in_repo):
    strategy = {"name": "peft", "config": {"class_path": "peft.VeraConfig",
                                           "init_args": {"r": 256, "target_modules": ["query", "value"]}}}
    fields = run_config("configs/revisiting/cb_lora.yaml",
                        [f"--model.strategy={json.dumps(strategy)}", "--trainer.max_steps=2", *real_fit_overrides(),
                         "--data.init_args.train_subset=16", "--data.init_args.max_length=32",
                         f"--data.init_args.data_dir={data_dir}"], tmp_path)
    assert fields["strategy"] == "peft" and int(fields["steps"]) == 2
    assert int(fields["trainable"]) == MINILM_LAYERS * 2 * (256 + HIDDEN)


@pytest.mark.parametrize("init", ["gaussian", "pissa", "olora"])
def test_lora_initialisations(init):
    plain = tiny_model("bert").eval()
    report = build_strategy("lora", r=4, init=init).apply(tiny_model("bert"))
    tuned = report.model.eval()
    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = plain(input_ids=ids).logits, tuned(input_ids=ids).logits
    query = tuned.base_model.model.bert.encoder.layer[0].attention.self.query
    if init == "gaussian":  # B starts at zero: the model is unchanged, A is Gaussian (not Kaiming-uniform)
        assert torch.equal(query.lora_B["default"].weight, torch.zeros_like(query.lora_B["default"].weight))
        assert torch.allclose(before, after)
    else:  # the adapter holds W's principal part and the frozen weight the residual: the same function at init
        assert query.lora_B["default"].weight.abs().sum() > 0
        assert not torch.equal(query.base_layer.weight, plain.bert.encoder.layer[0].attention.self.query.weight)
        assert torch.allclose(before, after, atol=1e-5)
        # Checkpoints rebuild the residual from the backbone: building again gives the same frozen weights.
        again = build_strategy("lora", r=4, init=init).apply(tiny_model("bert")).model
        again_query = again.base_model.model.bert.encoder.layer[0].attention.self.query
        assert torch.equal(again_query.base_layer.weight, query.base_layer.weight)


def test_pissa_checkpoint_reloads_identical_logits(tmp_path, data_dir):
    L.seed_everything(0)
    dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=8, max_length=32, train_subset=16)
    module = PETModule(task="rte", strategy={"name": "lora", "r": 4, "init": "pissa"}, learning_rate=1e-2)
    run = quiet_trainer(tmp_path, max_steps=2, limit_val_batches=0, precision="32-true")
    run.fit(module, datamodule=dm)
    run.save_checkpoint(tmp_path / "pissa.ckpt")
    restored = PETModule.load_from_checkpoint(tmp_path / "pissa.ckpt").eval()
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        assert torch.equal(module.eval()(batch), restored(batch))


def test_lora_plus_puts_b_matrices_in_their_own_group_at_ratio_times_the_learning_rate():
    module = PETModule(task="rte", strategy={"name": "lora", "lora_plus_ratio": 16}, learning_rate=1e-3,
                       head_learning_rate=5e-3)
    groups = module.parameter_groups(1e-3, 5e-3)
    named = {id(p): n for n, p in module.model.named_parameters()}
    lr_of = {named[id(p)]: g["lr"] for g in groups for p in g["params"]}
    assert set(lr_of) == set(module.report.trainable_names)
    for name, lr in lr_of.items():
        expected = 5e-3 if "modules_to_save" in name else 16e-3 if ".lora_B." in name else 1e-3
        assert lr == pytest.approx(expected), name
    assert {g["name"] for g in groups} == {"body", "body_x16", "head", "head_no_decay"}
    plain = PETModule(task="rte", strategy="dora").parameter_groups(1e-3, 5e-3)
    assert {g["name"] for g in plain} == {"body", "head", "head_no_decay"}
    with pytest.raises(StrategyError, match="lora_plus_ratio=0: use a positive ratio"):
        build_strategy("dora", lora_plus_ratio=0)


def test_bad_peft_configs_are_one_line_errors(minilm):
    cases = [
        ({"config": LoraConfig(target_modules=["query", "qkv"])},
         r"peft: target module qkv does not exist in BertForSequenceClassification: use names of its linear layers"),
        ({"config": LoraConfig(target_modules=["query"], task_type="CAUSAL_LM")},
         r"LoraConfig with task_type=CAUSAL_LM cannot wrap BertForSequenceClassification: drop task_type"),
        # Only the head (kept whole by the strategy) matches: nothing in the backbone would train.
        ({"config": LoraConfig(target_modules=r".*classifier")},
         r"peft cannot apply LoraConfig to BertForSequenceClassification \(No modules were targeted.*fix target"),
        ({"config": {"class_path": "peft.NoSuchConfig"}}, r"peft config class 'peft.NoSuchConfig' does not exist"),
        ({"config": {"class_path": "peft.VeraConfig", "init_args": {"rank": 4}}}, r"VeraConfig has no setting rank"),
        ({"config": {"class_path": "torch.nn.Linear"}}, r"torch.nn.Linear is not a peft config class"),
    ]
    for settings, message in cases:
        with pytest.raises(StrategyError, match=message) as err:
            build_strategy("peft", **settings).apply(load_backbone("minilm", get_task("rte")))
        assert "\n" not in str(err.value)
    with pytest.raises(StrategyError, match="vera: target module q_proj does not exist in BertForSequence"):
        build_strategy("vera", target_modules=["q_proj"]).apply(minilm)


@pytest.mark.parametrize("family", sorted(tiny_configs()))
def test_ia3_scales_keys_values_and_the_ffn_activation_only(family):
    report = build_strategy("ia3").apply(tiny_model(family))
    scaled = {n.split(".layer.")[1].split(".", 1)[1].rsplit(".ia3_l", 1)[0]: p
              for n, p in report.model.named_parameters() if ".ia3_l." in n}
    expected = {"distilbert": {"attention.k_lin", "attention.v_lin", "ffn.lin2"},
                "deberta-v2": {"attention.self.key_proj", "attention.self.value_proj", "output.dense"}}
    assert set(scaled) == expected.get(family, {"attention.self.key", "attention.self.value", "output.dense"})
    # Keys and values scaled on their output (hidden 16), the FFN's second layer on its input (the activation, 32).
    assert report.trainable == 2 * (16 + 16 + 32)


def test_every_method_feeds_copa_the_same_token_types():
    """peft's feature-extraction wrapper (prompt and prefix tuning on multiple choice) used to drop them."""
    ids = torch.randint(1000, 2000, (2, 2, 10), generator=torch.Generator().manual_seed(0))
    token_types = torch.zeros_like(ids)
    token_types[..., 6:] = 1  # the second segment: the choice
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": token_types}
    expected = token_types.view(-1, 10)
    for strategy in ("full", "bitfit", "lora", "ia3", "vera", {"name": "prefix", "num_virtual_tokens": 4},
                     {"name": "prompt", "num_virtual_tokens": 4}):
        module = PETModule(task="copa", strategy=strategy).eval()
        embeddings = next(m for n, m in module.model.named_modules() if n.endswith("embeddings.token_type_embeddings"))
        seen: list[torch.Tensor] = []
        handle = embeddings.register_forward_hook(lambda mod, args, out, seen=seen: seen.append(args[0]))
        with torch.no_grad():
            module(batch)
        handle.remove()
        # Prompt tuning prepends 4 virtual tokens of type 0 (as peft does for sequence classification).
        got = seen[0][:, -10:]
        assert torch.equal(got, expected), strategy
        assert not seen[0][:, :-10].any(), strategy


def test_ia3_on_bert_base_is_not_the_attention_output():
    hf = build_from_config(BertConfig(num_hidden_layers=1), get_task("rte"))
    names = build_strategy("ia3").apply(hf).trainable_names
    assert not any("attention.output.dense" in n for n in names)
