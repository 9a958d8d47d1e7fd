"""Export keeps the model: every strategy x head x pooler exports and reloads with the trained module's logits.

``load_exported`` always; plain transformers / peft where the folder says it is plain (``"plain": true``); where
plain tools cannot represent the module (``pooler='first_token'``, ``head='mlp'``, injected adapters), the folder
says why, keeps its peft files out of plain peft's way, and ``plain=True`` / ``merge=True`` refuse it in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForMultipleChoice, AutoModelForSequenceClassification

from pet_lightning import PETModule
from pet_lightning.export import ExportError, export, load_exported
from pet_lightning.strategies import STRATEGIES

# Settings that fit the 2-layer, 32-wide tiny backbone; every other strategy takes its defaults.
SETTINGS = {
    "vera": {"r": 8},
    "prefix": {"num_virtual_tokens": 4},
    "prompt": {"num_virtual_tokens": 4},
    "peft": {"config": {"class_path": "peft.LoHaConfig", "init_args": {"r": 4, "target_modules": ["query", "value"]}}},
}
MATRIX = [(name, head, pooler) for name in sorted(STRATEGIES) for head in ("hf", "mlp")
          for pooler in ("pretrained", "first_token", "mean")]
BATCH = {
    "input_ids": torch.randint(1000, 2000, (3, 12), generator=torch.Generator().manual_seed(0)),
    "attention_mask": torch.ones(3, 12, dtype=torch.long),
    "token_type_ids": torch.cat([torch.zeros(3, 6, dtype=torch.long), torch.ones(3, 6, dtype=torch.long)], 1),
}


def trained(backbone: str, name: str, head: str, pooler: str, task: str = "rte") -> PETModule:
    """A module whose trainable tensors (method and head) have all moved away from their initial values."""
    module = PETModule(backbone=backbone, task=task, strategy={"name": name, **SETTINGS.get(name, {})}, init_seed=0,
                       head=head, head_hidden_size=16, pooler=pooler)
    generator = torch.Generator().manual_seed(1)
    parameters = dict(module.model.named_parameters())
    with torch.no_grad():
        for tensor in module.report.trainable_names:
            parameters[tensor].add_(0.05 * torch.randn(parameters[tensor].shape, generator=generator))
    return module.eval()


def logits(module: PETModule, batch: dict = BATCH) -> torch.Tensor:
    with torch.no_grad():
        return module(batch)


def plain_logits(backbone: str, folder: Path, layout: str) -> torch.Tensor:
    """What a user with plain transformers / peft gets from the folder, as the export docs say to load it."""
    base = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=2)
    if layout == "peft":
        model = PeftModel.from_pretrained(base, str(folder))
    else:
        model = base
        model.load_state_dict(load_file(folder / "trainable.safetensors"), strict=False)
    with torch.no_grad():
        return model.eval()(**BATCH).logits


def round_trip(backbone: str, folder: Path, name: str, head: str, pooler: str) -> float:
    """Export, reload with load_exported, check the folder's promises; returns the max logit difference."""
    module = trained(backbone, name, head, pooler)
    export(module, folder)
    info = json.loads((folder / "pet_lightning.json").read_text())
    assert info["module"]["pooler"] == pooler and info["module"]["head"] == head
    assert info["module"]["head_hidden_size"] == 16
    back = load_exported(folder).eval()
    assert (back.hparams.pooler, back.hparams.head) == (pooler, head)
    # Continue training: the same tensors train again.
    assert set(back.report.trainable_names) == set(module.report.trainable_names)
    expected = logits(module)
    difference = (logits(back) - expected).abs().max().item()
    assert difference <= 1e-6
    if info["plain"]:
        assert torch.allclose(plain_logits(backbone, folder, info["layout"]), expected, atol=1e-6)
    else:
        # Nothing at the top level that PeftModel.from_pretrained would load to other logits without a word.
        assert not (folder / "adapter_config.json").exists()
        assert info["not_plain"]
    return difference


@pytest.mark.parametrize(("name", "head", "pooler"), MATRIX, ids=["-".join(case) for case in MATRIX])
def test_every_strategy_head_and_pooler_reloads_with_the_trained_logits(tiny, tmp_path, name, head, pooler):
    round_trip(tiny, tmp_path, name, head, pooler)


@pytest.mark.parametrize(("name", "head", "pooler"), [("bitfit", "hf", "first_token"), ("lora", "mlp", "pretrained"),
                                                      ("lora", "hf", "first_token"), ("adapter", "hf", "pretrained")])
def test_plain_and_merge_refuse_what_plain_tools_cannot_represent_in_one_line(tiny, tmp_path, name, head, pooler):
    module = trained(tiny, name, head, pooler)
    reasons = {"first_token": "pooler='first_token'", "mlp": "head='mlp'"}
    reason = reasons.get(pooler if pooler != "pretrained" else head, "adds modules plain transformers lacks")
    with pytest.raises(ExportError, match=r"plain=True: plain transformers / peft cannot represent") as err:
        export(module, tmp_path / "plain", plain=True)
    assert reason in str(err.value) and "\n" not in str(err.value)
    if name == "lora":
        with pytest.raises(ExportError, match=r"merge=True writes a plain transformers model, which cannot") as err:
            export(module, tmp_path / "merged", merge=True)
        assert reason in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "plain").exists() and not (tmp_path / "merged").exists()


@pytest.mark.parametrize("name", ["lora", "bitfit", "full"])
def test_plain_export_of_a_plain_module_loads_with_plain_tools(tiny, tmp_path, name):
    module = trained(tiny, name, "hf", "pretrained")
    export(module, tmp_path, plain=True)
    info = json.loads((tmp_path / "pet_lightning.json").read_text())
    assert info["plain"] is True and "not_plain" not in info
    assert torch.allclose(plain_logits(tiny, tmp_path, info["layout"]), logits(module), atol=1e-6)


@pytest.mark.parametrize("name", ["prefix", "lora", "bitfit"])
def test_multiple_choice_exports_with_mlp_head_and_first_token_round_trip(tiny, tmp_path, name):
    module = trained(tiny, name, "mlp", "first_token", task="copa")
    batch = {key: value.view(3, 1, 12).expand(3, 2, 12).contiguous() for key, value in BATCH.items()}
    export(module, tmp_path)
    back = load_exported(tmp_path).eval()
    assert torch.allclose(logits(back, batch), logits(module, batch), atol=1e-6)


@pytest.mark.parametrize(("name", "task"), [("prefix", "rte"), ("lora", "rte"), ("bitfit", "copa"), ("full", "stsb")])
def test_mean_pooler_round_trips_with_padding_and_refuses_plain_export(tiny, tmp_path, name, task):
    module = trained(tiny, name, "mlp", "mean", task=task)
    # Rows of different lengths: padding that leaked into the mean would change the logits.
    batch = {**BATCH, "attention_mask": (torch.arange(12) < torch.tensor([[12], [7], [3]])).long()}
    if task == "copa":
        batch = {key: value.view(3, 1, 12).expand(3, 2, 12).contiguous() for key, value in batch.items()}
    export(module, tmp_path / "folder")
    back = load_exported(tmp_path / "folder").eval()
    assert back.hparams.pooler == "mean"
    assert torch.allclose(logits(back, batch), logits(module, batch), atol=1e-6)
    padded = {**batch, "input_ids": torch.where(batch["attention_mask"].bool(), batch["input_ids"], 0)}
    assert torch.allclose(logits(back, padded), logits(module, batch), atol=1e-5)
    with pytest.raises(ExportError, match=r"pooler='mean' feeds the head the mean of the token states") as err:
        export(module, tmp_path / "plain", plain=True)
    assert "\n" not in str(err.value)


def test_multiple_choice_plain_prefix_export_loads_with_plain_peft(tiny, tmp_path):
    module = trained(tiny, "prefix", "hf", "pretrained", task="copa")
    batch = {key: value.view(3, 1, 12).expand(3, 2, 12).contiguous() for key, value in BATCH.items()
             if key != "token_type_ids"}
    export(module, tmp_path, plain=True)
    base = AutoModelForMultipleChoice.from_pretrained(tiny)
    base.bert = PeftModel.from_pretrained(base.bert, str(tmp_path))
    base.load_state_dict(load_file(tmp_path / "head.safetensors"), strict=False)
    with torch.no_grad():
        assert torch.allclose(base.eval()(**batch).logits, logits(module, batch), atol=1e-6)


def test_load_exported_refuses_to_change_the_recorded_head_or_pooler_in_one_line(tiny, tmp_path):
    export(trained(tiny, "bitfit", "hf", "first_token"), tmp_path)
    with pytest.raises(ExportError, match=r"exported with pooler='first_token'.*drop pooler='pretrained'") as err:
        load_exported(tmp_path, pooler="pretrained")
    assert "\n" not in str(err.value)
    assert load_exported(tmp_path, learning_rate=1e-4).hparams.learning_rate == 1e-4


def test_a_folder_of_another_head_is_an_export_error_not_a_key_error(tiny, tmp_path):
    export(trained(tiny, "lora", "mlp", "pretrained"), tmp_path)
    info_path = tmp_path / "pet_lightning.json"
    info = json.loads(info_path.read_text())
    info["module"]["head"] = "hf"  # a hand-edited or foreign record: the tensors are the mlp head's
    info_path.write_text(json.dumps(info))
    with pytest.raises(ExportError, match="holds peft tensors this model does not fit") as err:
        load_exported(tmp_path)
    assert "\n" not in str(err.value)
