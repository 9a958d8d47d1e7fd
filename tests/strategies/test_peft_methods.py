"""The peft presets (LoRA, DoRA, VeRA, AdaLoRA, IA3, prefix, prompt) and a user-written peft config: what trains,
counts, errors, training, checkpoints and resume."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from peft import PeftModel
from peft.utils.other import ModulesToSaveWrapper
from transformers import BertConfig, RobertaConfig

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.backbones import build_from_config, load_backbone
from pet_lightning.strategies import StrategyError, build_strategy
from pet_lightning.tasks import get_task
from tests.helpers.backbones import FFN, HIDDEN, MINILM_LAYERS, MINILM_TOTAL, tiny_model
from tests.helpers.resume import assert_resume_equals_uninterrupted, fit_for_resume
from tests.helpers.trainers import quiet_trainer, strategy_callbacks

HEAD_COPY = {"base_model.model.classifier.modules_to_save.default.weight",
             "base_model.model.classifier.modules_to_save.default.bias"}
PROMPT_HEAD = {"base_model.classifier.modules_to_save.default.weight",
               "base_model.classifier.modules_to_save.default.bias"}


def adapted(*tensors: str, modules=("attention.self.query", "attention.self.value")) -> set[str]:
    """Names of the given per-module tensors on every MiniLM layer's ``modules``."""
    return {
        f"base_model.model.bert.encoder.layer.{i}.{m}.{t}"
        for i in range(MINILM_LAYERS) for m in modules for t in tensors
    }


def lora_names(r_modules=("query", "value")) -> set[str]:
    return adapted("lora_A.default.weight", "lora_B.default.weight",
                   modules=tuple(f"attention.self.{m}" for m in r_modules))


def ia3_names() -> set[str]:
    # Keys, values and the FFN's second layer (its input: the intermediate activation); not attention.output.dense.
    return adapted("ia3_l.default", modules=("attention.self.key", "attention.self.value", "output.dense"))


# A method no preset covers (LoHa, from LyCORIS), given as a user-written peft config.
LOHA = {"config": {"class_path": "peft.LoHaConfig", "init_args": {"r": 4, "target_modules": ["query", "value"]}}}
ADAPTED = MINILM_LAYERS * 2  # query and value of every layer


# name -> (settings, method tensor names, head names, trainable count on MiniLM)
CASES = {
    "lora": ({"r": 8}, lora_names(), HEAD_COPY, MINILM_LAYERS * 2 * 2 * 8 * HIDDEN),
    "ia3": ({}, ia3_names(), HEAD_COPY, MINILM_LAYERS * (2 * HIDDEN + FFN)),
    # DoRA: LoRA plus one magnitude per output feature.
    "dora": ({"r": 8}, lora_names() | adapted("lora_magnitude_vector.default.weight"), HEAD_COPY,
             ADAPTED * (2 * 8 * HIDDEN + HIDDEN)),
    # VeRA: the shared random matrices are frozen buffers; b (out_features) and d (r) train.
    "vera": ({"r": 64}, adapted("vera_lambda_b.default", "vera_lambda_d.default"), HEAD_COPY, ADAPTED * (64 + HIDDEN)),
    # AdaLoRA: P (init_r x in), Q (out x init_r) and the singular values E (init_r).
    "adalora": ({"init_r": 6, "target_r": 2}, adapted("lora_A.default", "lora_B.default", "lora_E.default"),
                HEAD_COPY, ADAPTED * (6 * HIDDEN + HIDDEN * 6 + 6)),
    # LoHa: two Hadamard-multiplied rank-4 factorisations, w1_a/w2_a (out x r) and w1_b/w2_b (r x in).
    "peft": (LOHA, adapted(*(f"hada_w{i}_{ab}.default" for i in (1, 2) for ab in "ab")), HEAD_COPY,
             ADAPTED * 2 * (4 * HIDDEN + 4 * HIDDEN)),
    "prefix": ({"num_virtual_tokens": 10}, {"prompt_encoder.default.embedding.weight"}, PROMPT_HEAD,
               10 * MINILM_LAYERS * 2 * HIDDEN),
    "prompt": ({"num_virtual_tokens": 10}, {"prompt_encoder.default.embedding.weight"}, PROMPT_HEAD, 10 * HIDDEN),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_trainable_set_is_exactly_method_tensors_plus_head(minilm, name):
    settings, method, head, count = CASES[name]
    report = build_strategy(name, **settings).apply(minilm)
    assert isinstance(report.model, PeftModel)
    trainable = {n for n, p in report.model.named_parameters() if p.requires_grad}
    assert trainable == method | head == set(report.trainable_names)
    assert set(report.head_names) == head
    assert report.trainable == count
    assert report.total == MINILM_TOTAL
    assert report.head == HIDDEN * 2 + 2
    original = report.model.get_base_model().classifier.original_module
    assert not any(p.requires_grad for p in original.parameters()), "the original head copy must stay frozen"


def test_prefix_projection_trains_the_mlp_too(minilm):
    report = build_strategy("prefix", num_virtual_tokens=10, projection=True, projection_hidden_size=32).apply(minilm)
    names = {n for n, p in report.model.named_parameters() if p.requires_grad} - PROMPT_HEAD
    width = MINILM_LAYERS * 2 * HIDDEN
    assert names == {"prompt_encoder.default.embedding.weight", "prompt_encoder.default.transform.0.weight",
                     "prompt_encoder.default.transform.0.bias", "prompt_encoder.default.transform.2.weight",
                     "prompt_encoder.default.transform.2.bias"}
    assert report.trainable == 10 * HIDDEN + (HIDDEN * 32 + 32) + (32 * width + width)


def test_lora_r8_on_query_value_of_roberta_base_is_294912():
    roberta_base = build_from_config(RobertaConfig(), get_task("rte"))
    report = build_strategy("lora", r=8, alpha=16, dropout=0.1).apply(roberta_base)
    assert report.trainable == 294_912
    assert report.total == sum(p.numel() for n, p in report.model.named_parameters()
                               if ".roberta." in n and "lora_" not in n)


def test_ia3_scales_of_bert_base_and_per_architecture_lora_defaults():
    report = build_strategy("ia3").apply(build_from_config(BertConfig(), get_task("rte")))
    # The IA3 paper's vectors: keys (768), values (768) and the FFN's intermediate activation (3072) per layer.
    assert report.trainable == 12 * (768 + 768 + 3072) == 55_296
    expected = {"roberta": "query", "deberta-v2": "query_proj", "electra": "query", "distilbert": "q_lin"}
    for family, query in expected.items():
        report = build_strategy("lora", r=2).apply(tiny_model(family))
        lora = [n for n in report.trainable_names if "lora_A" in n]
        assert len(lora) == 4 and sum(f".{query}.lora_A" in n for n in lora) == 2, (family, lora)


def test_multiple_choice_prefix_wraps_the_encoder_and_runs():
    module = PETModule(task="copa", strategy={"name": "prefix", "num_virtual_tokens": 4})
    hf = module.model
    assert type(hf).__name__ == "BertForMultipleChoice" and isinstance(hf.bert, PeftModel)
    assert set(module.report.trainable_names) == {"bert.prompt_encoder.default.embedding.weight",
                                                  "classifier.weight", "classifier.bias"}
    ids = torch.randint(1000, 2000, (3, 2, 9))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    logits = module(batch)
    assert logits.shape == (3, 2)


@pytest.mark.parametrize("name", ["lora", "prefix"])
def test_remove_returns_the_plain_model_with_the_trained_head(minilm, name):
    strategy = build_strategy(name, **CASES[name][0])
    report = strategy.apply(minilm)
    trained_head = report.model.get_base_model().classifier.modules_to_save["default"]
    with torch.no_grad():
        trained_head.weight.add_(1.0)
    plain = report.remove()
    assert type(plain).__name__ == "BertForSequenceClassification"
    assert not any(isinstance(m, ModulesToSaveWrapper) for m in plain.modules())
    fresh = load_backbone("minilm", get_task("rte"))
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in fresh.named_parameters()]
    assert plain.classifier is trained_head
    # The plain model takes another strategy (two-stage training).
    assert build_strategy("bitfit").apply(plain).trainable > 0


def test_bad_settings_are_one_line_errors(minilm):
    with pytest.raises(StrategyError, match=r"lora r=0: the rank must be a positive integer") as err:
        build_strategy("lora", r=0)
    assert "\n" not in str(err.value)
    with pytest.raises(StrategyError, match=r"target module qkv does not exist in BertForSequence") as err:
        build_strategy("lora", target_modules=["query", "qkv"]).apply(minilm)
    assert "\n" not in str(err.value)
    with pytest.raises(StrategyError, match="num_virtual_tokens=0"):
        build_strategy("prompt", num_virtual_tokens=0)


def test_prefix_on_an_encoder_without_past_key_values_is_a_one_line_error(tiny_bert_config, monkeypatch):
    """transformers 5.24 renamed BERT's past_key_values; peft's prefix tuning would fail in the first forward."""
    from transformers.models.bert.modeling_bert import BertModel

    plain_forward = BertModel.forward

    def forward_without_past(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        return plain_forward(self, input_ids, attention_mask, token_type_ids, **kwargs)

    model = build_from_config(tiny_bert_config, get_task("rte"))
    monkeypatch.setattr(BertModel, "forward", forward_without_past)
    with pytest.raises(StrategyError, match=r"prefix: BertModel in transformers .* takes no past_key_values") as err:
        build_strategy("prefix").apply(model)
    assert "\n" not in str(err.value)
    build_strategy("prompt").apply(model)  # prompt tuning feeds embeddings, not past_key_values


def test_prefix_longer_than_max_length_fails_at_fit_start(tmp_path, data_dir):
    dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=8, max_length=16, train_subset=16)
    module = PETModule(task="rte", strategy={"name": "prefix", "num_virtual_tokens": 20})
    with pytest.raises(StrategyError, match=r"num_virtual_tokens=20 is longer than the data's max_length=16") as err:
        quiet_trainer(tmp_path, fast_dev_run=1).fit(module, datamodule=dm)
    assert "\n" not in str(err.value)


def test_ia3_under_bf16_true_warns_that_scales_will_not_move(tmp_path, data_dir):
    dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=4, max_length=32, train_subset=8)
    module = PETModule(task="rte", strategy="ia3")
    with pytest.warns(UserWarning, match="ia3 under bf16-true.*will not move"):
        quiet_trainer(tmp_path, fast_dev_run=1, precision="bf16-true").fit(module, datamodule=dm)


def test_optimizer_groups_give_the_head_and_the_method_their_own_learning_rates():
    module = PETModule(task="rte", strategy="lora", learning_rate=1e-3, head_learning_rate=5e-3)
    groups = module.parameter_groups(1e-3, 5e-3)
    by_id = {id(p): g for g in groups for p in g["params"]}
    named = dict(module.model.named_parameters())
    assert set(by_id) == {id(named[n]) for n in module.report.trainable_names}
    for name in module.report.trainable_names:
        assert by_id[id(named[name])]["lr"] == (5e-3 if name in HEAD_COPY else 1e-3), name


LEARNING_RATES = {"lora": 5e-3, "ia3": 2e-2, "prefix": 1e-2, "prompt": 3e-2, "dora": 5e-3, "vera": 2e-2,
                  "adalora": 5e-3, "peft": 5e-3}


def _mean_loss(module: PETModule, batches) -> float:
    module.eval()
    with torch.no_grad():
        return sum(float(module.loss(module(b), b["label"])) for b in batches) / len(batches)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fifty_real_steps_lower_the_loss_and_move_the_method_tensors(tmp_path, data_dir, name):
    L.seed_everything(0)
    dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=8, max_length=32, train_subset=80)
    dm.setup("fit")
    strategy = {"name": name, **CASES[name][0]}
    module = PETModule(task="rte", strategy=strategy, learning_rate=LEARNING_RATES[name],
                       head_learning_rate=5e-3, warmup_ratio=0.0, init_seed=0)
    batches = list(dm.train_dataloader())
    before = _mean_loss(module, batches)
    method = {n: p.detach().clone() for n, p in module.model.named_parameters() if n in CASES[name][1]}
    module.train()
    run = quiet_trainer(tmp_path, max_steps=50, limit_val_batches=0, callbacks=strategy_callbacks(strategy))
    run.fit(module, datamodule=dm)
    after = _mean_loss(module, batches)
    # Losses are measured in eval mode on the same batches, so any drop is real. Prefix and prompt tuning move
    # slowest (0.689 -> 0.651 and 0.659 here; LoRA and IA3 reach about 0.45).
    assert after < before - 0.01, (before, after)
    moved = {n: float((p - method[n]).abs().max()) for n, p in module.model.named_parameters() if n in method}
    if name == "adalora":
        # The schedule pruned the singular values E to the budget: target_r per adapted module on average (pruned
        # ones are zero, their initial value, so E is excluded from "every tensor moved").
        kept = sum(int((p != 0).sum()) for n, p in module.model.named_parameters() if ".lora_E." in n)
        assert kept == CASES[name][0]["target_r"] * ADAPTED
        moved = {n: v for n, v in moved.items() if ".lora_E." not in n}
    assert all(v > 0 for v in moved.values()), moved


@pytest.mark.parametrize("name", ["lora", "prefix", "dora", "vera", "adalora", "peft"])
def test_checkpoint_holds_method_and_head_and_reloads_identical_logits(tmp_path, data_dir, name):
    L.seed_everything(0)
    dm = GlueDataModule(task="rte", data_dir=data_dir, batch_size=8, max_length=64, train_subset=16)
    strategy = {"name": name, **CASES[name][0]}
    module = PETModule(task="rte", strategy=strategy, learning_rate=1e-2)
    run = quiet_trainer(tmp_path, max_steps=2, limit_val_batches=0, precision="32-true",
                        callbacks=strategy_callbacks(strategy))
    run.fit(module, datamodule=dm)
    path = tmp_path / "method.ckpt"
    run.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    _, method, head, _ = CASES[name]
    assert set(checkpoint["state_dict"]) == {f"model.{n}" for n in method | head}
    restored = PETModule.load_from_checkpoint(path)
    batch = next(iter(dm.train_dataloader()))
    module.eval()
    restored.eval()
    with torch.no_grad():
        assert torch.equal(module(batch), restored(batch))


def test_lora_resume_equals_uninterrupted(tmp_path, data_dir):
    assert_resume_equals_uninterrupted(tmp_path, data_dir, {"name": "lora", "r": 4, "dropout": 0.1})


@pytest.mark.parametrize("name", ["dora", "vera", "adalora", "peft"])
def test_new_presets_resume_equals_uninterrupted(tmp_path, data_dir, name):
    # AdaLoRA prunes from step 1 of 6 here: its importance scores and rank pattern must come back with the checkpoint.
    assert_resume_equals_uninterrupted(tmp_path, data_dir, {"name": name, **CASES[name][0]})


def test_resume_without_the_stored_dropout_stream_differs(tmp_path, data_dir):
    """Control for the resume tests: a checkpoint stripped of its dropout stream no longer replays the run."""
    strategy = {"name": "lora", "r": 4, "dropout": 0.1}
    every_epoch = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    whole, _ = fit_for_resume(tmp_path / "whole", data_dir, strategy, callbacks=[every_epoch])
    checkpoint = torch.load(tmp_path / "ckpt" / "epoch=0.ckpt", weights_only=False)
    assert set(checkpoint["pet_lightning"]["rng"]) == {"cpu"}
    del checkpoint["pet_lightning"]["rng"]
    torch.save(checkpoint, tmp_path / "stripped.ckpt")
    resumed, _ = fit_for_resume(tmp_path / "second", data_dir, strategy, ckpt_path=tmp_path / "stripped.ckpt")
    lora_a = next(name for name in whole.report.trainable_names if "lora_A" in name)
    got, expected = dict(resumed.model.named_parameters())[lora_a], dict(whole.model.named_parameters())[lora_a]
    assert not torch.equal(got, expected)
