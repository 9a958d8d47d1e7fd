"""Feature caching for linear probing: same logits as the full model, no encoder pass once cached."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from transformers import BertConfig, DistilBertConfig, GPT2Config, RobertaConfig

from pet_lightning import PETModule
from pet_lightning.backbones import build_from_config
from pet_lightning.data import GlueDataModule
from pet_lightning.feature_cache import FeatureCache, FeatureCacheError, fingerprint
from pet_lightning.strategies import build_strategy
from pet_lightning.strategies.base import backbone_of
from pet_lightning.tasks import get_task

TINY = {"vocab_size": 100, "num_attention_heads": 2, "max_position_embeddings": 80}
CONFIGS = {
    "bert": lambda: BertConfig(hidden_size=16, num_hidden_layers=2, intermediate_size=32, **TINY),
    "roberta": lambda: RobertaConfig(hidden_size=16, num_hidden_layers=2, intermediate_size=32, **TINY),
    "distilbert": lambda: DistilBertConfig(
        vocab_size=100, dim=16, n_layers=2, n_heads=2, hidden_dim=32, max_position_embeddings=80
    ),
}


def _frozen(config, task: str = "rte"):
    torch.manual_seed(0)
    model = build_from_config(config, get_task(task))
    build_strategy("frozen").apply(model)
    return model.eval()


def _batch(shape: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, shape, generator=generator)
    mask = torch.ones_like(ids)
    mask[..., 0, 7:] = 0  # one padded row, so padding is part of what must match
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_cached_logits_equal_full_model_logits(arch):
    model = _frozen(CONFIGS[arch]())
    inputs = _batch((4, 10))
    cache = FeatureCache()
    with torch.no_grad():
        full = model(**inputs).logits
        first = cache.logits(model, inputs, torch.arange(4), "train")
        second = cache.logits(model, inputs, torch.arange(4), "train")
    torch.testing.assert_close(first, full)
    torch.testing.assert_close(second, full)
    assert cache.encoder_calls == 1 and len(cache) == 4
    # Stored features hold the first token only, not the whole [batch, length, hidden] output.
    assert all(cls.untyped_storage().nbytes() <= 4 * 16 * 4 for _, cls, _ in cache.store["train"].values())


@pytest.mark.parametrize("shape", [(6, 10), (6, 2, 10)], ids=["single", "multiple_choice"])
def test_a_partly_cached_batch_encodes_only_its_new_rows(shape):
    task = "copa" if len(shape) == 3 else "rte"
    model = _frozen(CONFIGS["bert"](), task)
    inputs = _batch(shape)
    cache = FeatureCache()
    first_half = {name: value[:3] for name, value in inputs.items()}
    with torch.no_grad():
        full = model(**inputs).logits
        cache.logits(model, first_half, torch.arange(3), "train")
        # A reshuffled shard: rows 0-2 are stored, 3-5 are new, in another order within the batch.
        order = torch.tensor([4, 0, 5, 2, 1, 3])
        mixed = cache.logits(model, {name: value[order] for name, value in inputs.items()}, order, "train")
    assert cache.encoder_calls == 2 and cache.rows_encoded == 6 and len(cache) == 6
    torch.testing.assert_close(mixed, full[order])
    with torch.no_grad():
        cache.logits(model, inputs, torch.arange(6), "train")
    assert cache.encoder_calls == 2 and cache.rows_encoded == 6


def test_multiple_choice_features_are_cached_per_choice():
    model = _frozen(CONFIGS["bert"](), task="copa")
    inputs = _batch((3, 2, 10))
    cache = FeatureCache()
    with torch.no_grad():
        full = model(**inputs).logits
        cache.logits(model, inputs, torch.arange(3), "train")
        cached = cache.logits(model, inputs, torch.arange(3), "train")
    assert full.shape == (3, 2)
    torch.testing.assert_close(cached, full)
    assert cache.encoder_calls == 1


def test_changed_example_under_same_idx_is_recomputed_and_scopes_are_separate():
    model = _frozen(CONFIGS["roberta"]())
    cache = FeatureCache()
    old, new = _batch((2, 10), seed=0), _batch((2, 10), seed=1)
    assert not torch.equal(fingerprint(old["input_ids"]), fingerprint(new["input_ids"]))
    with torch.no_grad():
        cache.logits(model, old, torch.arange(2), "train")
        got = cache.logits(model, new, torch.arange(2), "train")
        torch.testing.assert_close(got, model(**new).logits)
        assert cache.encoder_calls == 2
        # The same idx in another split is another example.
        cache.logits(model, old, torch.arange(2), "val/0")
    assert cache.encoder_calls == 3 and set(cache.store) == {"train", "val/0"}


def test_head_reading_more_than_the_first_token_is_refused():
    config = GPT2Config(vocab_size=100, n_embd=16, n_layer=2, n_head=2, n_positions=80, pad_token_id=0)
    model = _frozen(config)
    with pytest.raises(FeatureCacheError, match="cache_features=False"):
        cache = FeatureCache()
        cache.logits(model, _batch((2, 10)), torch.arange(2), "train")


def test_minilm_cached_equals_uncached_in_eval_mode():
    module = PETModule(strategy="frozen", init_seed=0)
    module.eval()
    inputs = _batch((4, 12))
    inputs["input_ids"] = inputs["input_ids"] + 1000  # real word pieces, not special tokens
    with torch.no_grad():
        full = module.model(**inputs).logits
        cached = module.feature_cache.logits(module.model, inputs, torch.arange(4), "val/0")
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-4)


def test_cache_is_on_for_frozen_only_and_follows_strategy_switches():
    frozen = PETModule(strategy="linear_probe", init_seed=0)
    assert frozen.caches_features()
    assert not PETModule(strategy="frozen", cache_features=False).caches_features()
    assert not PETModule(strategy="bitfit").caches_features()
    # Asked for, but the encoder trains: the cache must not be read.
    assert not PETModule(strategy="bitfit", cache_features=True).caches_features()
    frozen.feature_cache.store["train"] = {0: (0, torch.zeros(384), None)}
    frozen.apply_strategy("full")
    assert not frozen.caches_features() and len(frozen.feature_cache) == 0


class EncoderCalls(L.Callback):
    """Counts real encoder passes (the embeddings run; the cache's stub replaces the encoder above them) per epoch."""

    def __init__(self) -> None:
        self.per_epoch: list[int] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        backbone_of(pl_module.model).embeddings.register_forward_hook(lambda *_: self._count())

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.per_epoch.append(0)

    def _count(self) -> None:
        self.per_epoch[-1] += 1


def _fit(module: PETModule, data_dir: str, epochs: int, callbacks=()) -> L.Trainer:
    datamodule = GlueDataModule(
        task="rte", data_dir=data_dir, max_length=64, batch_size=16, train_subset=32, order_seed=0
    )
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=2, num_sanity_val_steps=0, callbacks=list(callbacks),
    )
    trainer.fit(module, datamodule=datamodule)
    return trainer


def test_later_epochs_skip_the_encoder_and_validation_matches_uncached(data_dir):
    calls = EncoderCalls()
    cached = PETModule(strategy="frozen", init_seed=0, learning_rate=1e-3)
    trainer = _fit(cached, data_dir, epochs=2, callbacks=[calls])
    # Epoch 1 encodes its 2 training batches (plus one full-model pass that checks the head) and 2 validation
    # batches; epoch 2 reads everything from the cache.
    assert calls.per_epoch[0] == 5
    assert calls.per_epoch[1] == 0
    assert len(cached.feature_cache.store["train"]) == 32
    # Same head weights, evaluated without the cache: the metrics do not change.
    plain = PETModule(strategy="frozen", init_seed=0, cache_features=False)
    plain.load_state_dict(cached.state_dict())
    validate = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "limit_val_batches": 2}
    datamodule = GlueDataModule(task="rte", data_dir=data_dir, max_length=64, batch_size=16, train_subset=32)
    with_cache = L.Trainer(**validate).validate(cached, datamodule=datamodule, verbose=False)[0]
    without = L.Trainer(**validate).validate(plain, datamodule=datamodule, verbose=False)[0]
    assert trainer.callback_metrics
    assert with_cache.keys() == without.keys()
    for key, value in with_cache.items():
        assert value == pytest.approx(without[key], abs=1e-5), key
