"""One loading path for every encoder family: hub name or local folder, plus the offline default."""

from __future__ import annotations

import pytest
from transformers import BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, RobertaConfig

from pet_lightning import PETModule
from pet_lightning.backbones import build_from_config, load_backbone, load_tokenizer
from pet_lightning.tasks import get_task

SMALL = dict(vocab_size=128, max_position_embeddings=64)
FAMILIES = {
    "bert": BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, **SMALL),
    "roberta": RobertaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                             **SMALL),
    "deberta-v2": DebertaV2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, **SMALL),
    "electra": ElectraConfig(hidden_size=16, embedding_size=16, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=32, **SMALL),
    "distilbert": DistilBertConfig(dim=16, n_layers=2, n_heads=2, hidden_dim=32, **SMALL),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("task", ["rte", "sts-b"])
def test_local_folder_of_each_family_loads_through_the_same_path(tmp_path, family, task):
    spec = get_task(task)
    build_from_config(FAMILIES[family], spec).save_pretrained(tmp_path)
    model = load_backbone(str(tmp_path), spec)
    assert model.config.model_type == family
    assert model.config.num_labels == spec.num_labels and model.training
    module = PETModule(backbone=str(tmp_path), task=task, strategy="frozen")
    assert module.report.trainable == 0 and module.report.head > 0


def test_offline_tokenizer_pairs_sentences():
    tokenizer = load_tokenizer("minilm")
    encoded = tokenizer("A cat.", "A dog.")
    assert encoded["input_ids"][0] == tokenizer.cls_token_id and 1 in encoded["token_type_ids"]


def test_hidden_dropout_reaches_every_family_including_distilbert(tmp_path):
    from transformers import DistilBertForSequenceClassification

    from pet_lightning.backbones import BackboneError, set_dropout

    bert = BertConfig()
    assert set_dropout(bert, 0.3) == ["hidden_dropout_prob", "attention_probs_dropout_prob"]
    assert bert.hidden_dropout_prob == bert.attention_probs_dropout_prob == 0.3
    distil = DistilBertConfig()
    assert set_dropout(distil, 0.25) == ["dropout", "attention_dropout"]
    with pytest.raises(BackboneError, match="use a probability in"):
        set_dropout(distil, 1.5)
    # A DistilBERT backbone from a local folder: its dropout modules take the override.
    tiny = DistilBertConfig(vocab_size=100, dim=32, hidden_dim=64, n_layers=2, n_heads=2, dropout=0.1,
                            attention_dropout=0.1)
    DistilBertForSequenceClassification(tiny).save_pretrained(tmp_path)
    module = PETModule(backbone=str(tmp_path), task="rte", strategy="full", hidden_dropout=0.0)
    layer = module.model.distilbert.transformer.layer[0]
    assert layer.attention.dropout.p == 0.0 and layer.ffn.dropout.p == 0.0
    assert module.model.config.dropout == module.model.config.attention_dropout == 0.0
