"""AdaLoRA's schedule callback: total steps from the trainer, one allocation per optimizer step (also under
gradient accumulation), the orthogonal regulariser as peft computes it, a refusal without the callback, and an
export of pruned ranks that plain peft loads."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from pet_lightning import GlueDataModule, PETModule
from pet_lightning.backbones import offline_model_dir
from pet_lightning.callbacks import AdaLoraSchedule
from pet_lightning.callbacks.adalora import adalora_model
from pet_lightning.export import export, load_exported
from pet_lightning.strategies import StrategyError
from tests.strategies.conftest import MINILM_LAYERS, trainer

ADALORA = {"name": "adalora", "init_r": 6, "target_r": 2, "tinit": 1, "tfinal": 1}
ADAPTED = MINILM_LAYERS * 2  # query and value of every layer


def _data(data_dir: str, train_subset: int = 32) -> GlueDataModule:
    return GlueDataModule(task="rte", data_dir=data_dir, batch_size=4, max_length=32, train_subset=train_subset,
                          order_seed=0)


def test_schedule_runs_once_per_optimizer_step_under_accumulation(tmp_path, data_dir, monkeypatch):
    L.seed_everything(0)
    module = PETModule(task="rte", strategy=ADALORA, learning_rate=1e-2, init_seed=0)
    tuner = adalora_model(module.model)
    calls: list[tuple[int, bool]] = []
    allocate = tuner.update_and_allocate

    def spy(step: int) -> None:
        calls.append((step, all(p.grad is not None for n, p in tuner.named_parameters() if ".lora_A." in n)))
        allocate(step)

    monkeypatch.setattr(tuner, "update_and_allocate", spy)
    # 32 examples in batches of 4, 2 epochs, accumulating 2 batches: 8 optimizer steps.
    run = trainer(tmp_path, max_epochs=2, limit_val_batches=0, accumulate_grad_batches=2,
                  callbacks=[AdaLoraSchedule()])
    run.fit(module, datamodule=_data(data_dir))
    assert run.global_step == 8 and tuner.peft_config["default"].total_step == 8
    assert calls == [(step, True) for step in range(1, 9)]  # after each step, with the accumulated gradients
    # The final allocation (step total - tfinal = 7) left target_r ranks per adapted layer on average.
    kept = sum(int((p != 0).sum()) for n, p in tuner.named_parameters() if ".lora_E." in n)
    assert kept == ADALORA["target_r"] * ADAPTED
    assert sum(sum(mask) for mask in tuner.peft_config["default"].rank_pattern.values()) == kept


def test_orthogonal_regulariser_gradient_equals_peft_own(data_dir):
    """peft adds orth_reg_weight * mean ||PP^T - I|| + ||Q^TQ - I|| to the loss when given labels; the module computes
    its loss from logits, so the callback adds that term's gradient instead. Both give the same gradients."""
    module = PETModule(task="rte", strategy=ADALORA, init_seed=0).eval()
    with torch.no_grad():  # E starts at zero, so Q and P would get no task gradient: move them first
        for name, p in module.model.named_parameters():
            if ".lora_E." in name:
                p.fill_(0.5)
    dm = _data(data_dir, train_subset=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    trained = [(n, p) for n, p in module.model.named_parameters() if p.requires_grad]

    module.model(**inputs, labels=batch["label"]).loss.backward()
    reference = {n: p.grad.clone() for n, p in trained}
    module.model.zero_grad(set_to_none=True)
    F.cross_entropy(module.model(**inputs).logits, batch["label"]).backward()
    without = {n: p.grad.clone() for n, p in trained}
    AdaLoraSchedule().on_before_optimizer_step(None, module, None)
    regularised = [n for n in reference if not torch.allclose(reference[n], without[n])]
    assert regularised and all(".lora_A." in n or ".lora_B." in n for n in regularised)
    for name, p in trained:
        assert torch.allclose(p.grad, reference[name], atol=1e-6), name


def test_adalora_without_the_schedule_is_refused_at_fit_start(tmp_path, data_dir):
    module = PETModule(task="rte", strategy=ADALORA)
    with pytest.raises(StrategyError, match="adalora: the trainer has no AdaLoraSchedule callback") as err:
        trainer(tmp_path, fast_dev_run=1).fit(module, datamodule=_data(data_dir, 8))
    assert "\n" not in str(err.value)
    with pytest.raises(StrategyError, match="leave no pruning phase in 2 optimizer steps"):
        trainer(tmp_path, max_steps=2, callbacks=[AdaLoraSchedule()]).fit(
            PETModule(task="rte", strategy={**ADALORA, "tinit": 1, "tfinal": 1}), datamodule=_data(data_dir, 8))


def test_pruned_adalora_exports_to_plain_peft_with_the_same_logits(tmp_path, data_dir):
    L.seed_everything(0)
    module = PETModule(task="rte", strategy=ADALORA, learning_rate=1e-2, init_seed=0)
    trainer(tmp_path, max_steps=6, limit_val_batches=0, precision="32-true", callbacks=[AdaLoraSchedule()]).fit(
        module, datamodule=_data(data_dir))
    rank_pattern = adalora_model(module.model).peft_config["default"].rank_pattern
    assert rank_pattern and not all(all(mask) for mask in rank_pattern.values())  # some ranks were pruned
    export(module.eval(), tmp_path / "export")
    dm = _data(data_dir)
    dm.setup("fit")
    batch = {k: v for k, v in next(iter(dm.train_dataloader())).items()
             if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        expected = module.model(**batch).logits
        base = AutoModelForSequenceClassification.from_pretrained(offline_model_dir(), num_labels=2)
        plain = PeftModel.from_pretrained(base, str(tmp_path / "export")).eval()
        assert torch.allclose(plain(**batch).logits, expected, atol=1e-5)
        back = load_exported(tmp_path / "export").eval()
        assert torch.allclose(back.model(**batch).logits, expected, atol=1e-5)
