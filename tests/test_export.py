"""Export to folders that plain peft / transformers load, and import back to evaluate or continue training."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForMultipleChoice, AutoModelForSequenceClassification

from pet_lightning import PETModule
from pet_lightning.backbones import offline_model_dir
from pet_lightning.export import ExportError, export, load_exported

BATCH = {
    "input_ids": torch.randint(1000, 2000, (3, 12), generator=torch.Generator().manual_seed(0)),
    "attention_mask": torch.ones(3, 12, dtype=torch.long),
    "token_type_ids": torch.zeros(3, 12, dtype=torch.long),
}


def trained(strategy: dict, task: str = "rte") -> PETModule:
    """A module whose method tensors and head have moved away from their initial values."""
    module = PETModule(task=task, strategy=strategy, init_seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in module.report.trainable_names:
            param = dict(module.model.named_parameters())[name]
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return module.eval()


def logits(module: PETModule) -> torch.Tensor:
    with torch.no_grad():
        return module(BATCH)


LOHA = {"name": "peft", "config": {"class_path": "peft.LoHaConfig",
                                   "init_args": {"r": 4, "target_modules": ["query", "value"]}}}


@pytest.mark.parametrize("strategy", [{"name": "lora"}, {"name": "ia3"}, {"name": "prefix", "num_virtual_tokens": 6},
                                      {"name": "prefix", "num_virtual_tokens": 6, "projection": True},
                                      {"name": "prompt", "num_virtual_tokens": 6}, {"name": "dora"},
                                      {"name": "vera", "r": 64}, {"name": "adalora"}, LOHA,
                                      {"name": "lora", "init": "pissa"}, {"name": "lora", "init": "olora"}],
                         ids=["lora", "ia3", "prefix", "prefix_projection", "prompt", "dora", "vera", "adalora",
                              "peft_loha", "lora_pissa", "lora_olora"])
def test_peft_export_loads_with_plain_peft_and_back_with_the_same_logits(tmp_path, strategy):
    module = trained(strategy)
    export(module, tmp_path)
    info = json.loads((tmp_path / "pet_lightning.json").read_text())
    if strategy.get("init") in ("pissa", "olora"):
        # Trained on residual weights: peft converted the adapter to a plain LoRA of twice the rank.
        assert info["converted_from"] == module.strategy.config_dict()
        assert json.loads((tmp_path / "adapter_config.json").read_text())["r"] == 16
    assert (tmp_path / "adapter_config.json").is_file() and (tmp_path / "adapter_model.safetensors").is_file()
    base = AutoModelForSequenceClassification.from_pretrained(offline_model_dir(), num_labels=2)
    plain = PeftModel.from_pretrained(base, str(tmp_path)).eval()
    with torch.no_grad():
        assert torch.allclose(plain(**BATCH).logits, logits(module), atol=1e-6)
    back = load_exported(tmp_path).eval()
    assert torch.allclose(logits(back), logits(module), atol=1e-6)
    # Continue training: the same kind of tensors train again.
    expected_trainable = set(module.report.trainable_names)
    if strategy.get("projection"):
        expected_trainable = {n for n in expected_trainable if ".transform." not in n}
    assert set(back.report.trainable_names) == expected_trainable


@pytest.mark.parametrize("name", ["lora", "dora", "vera"])
def test_lora_merged_export_is_a_plain_transformers_model(tmp_path, name):
    module = trained({"name": name})
    export(module, tmp_path, merge=True)
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert not any(kind in n for n, _ in merged.named_parameters() for kind in ("lora", "vera"))
    with torch.no_grad():
        assert torch.allclose(merged(**BATCH).logits, logits(module), atol=1e-5)
    back = load_exported(tmp_path)
    assert back.strategy.name == "full"
    assert torch.allclose(logits(back.eval()), logits(module), atol=1e-5)
    # The module being exported is unchanged by merging (a copy is merged).
    assert any(kind in n for n in module.report.trainable_names for kind in ("lora_A", "vera_lambda"))


def test_adapter_export_is_a_documented_safetensors_file_and_json(tmp_path):
    module = trained({"name": "adapter", "style": "houlsby", "reduction_factor": 32})
    export(module, tmp_path)
    tensors = load_file(tmp_path / "trainable.safetensors")
    assert set(tensors) == set(module.report.trainable_names)
    assert tensors["bert.encoder.layer.0.output.dense.adapter.down.weight"].shape == (12, 384)
    assert tensors["bert.encoder.layer.0.attention.output.dense.adapter.up.weight"].shape == (384, 12)
    assert "classifier.weight" in tensors
    settings = json.loads((tmp_path / "strategy.json").read_text())
    assert settings == {"name": "adapter", "style": "houlsby", "reduction_factor": 32, "activation": "relu",
                        "init_std": 0.01, "placement": "projection"}
    back = load_exported(tmp_path, learning_rate=1e-4).eval()
    assert torch.equal(logits(back), logits(module))
    assert back.hparams.learning_rate == 1e-4


def test_multiple_choice_prefix_export_round_trips(tmp_path):
    module = trained({"name": "prefix", "num_virtual_tokens": 4}, task="copa")
    batch = {key: value.view(3, 1, 12).expand(3, 2, 12).contiguous() for key, value in BATCH.items()}
    export(module, tmp_path)
    base = AutoModelForMultipleChoice.from_pretrained(offline_model_dir())
    base.bert = PeftModel.from_pretrained(base.bert, str(tmp_path))
    base.load_state_dict(load_file(tmp_path / "head.safetensors"), strict=False)
    back = load_exported(tmp_path).eval()
    with torch.no_grad():
        expected = module(batch)
        assert torch.allclose(back(batch), expected, atol=1e-6)
        assert torch.allclose(base.eval()(**batch).logits, expected, atol=1e-6)


def test_import_of_a_foreign_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(ExportError, match=r"has no pet_lightning.json: pass a folder written by") as err:
        load_exported(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(ExportError, match="merge=True needs lora or ia3"):
        export(PETModule(task="rte", strategy="bitfit"), tmp_path, merge=True)
