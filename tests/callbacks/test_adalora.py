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
from pet_lightning.export import export, load_exported
from pet_lightning.strategies import StrategyError
from pet_lightning.strategies.peft_methods import adalora_model
from tests.helpers.backbones import MINILM_LAYERS
from tests.helpers.data import small_glue
from tests.helpers.trainers import quiet_trainer

ADALORA = {"name": "adalora", "init_r": 6, "target_r": 2, "tinit": 1, "tfinal": 1}
ADAPTED = MINILM_LAYERS * 2  # query and value of every layer


def _data(data_dir: str, train_subset: int = 32) -> GlueDataModule:
    return small_glue(data_dir, batch_size=4, train_subset=train_subset)


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
    run = quiet_trainer(tmp_path, max_epochs=2, limit_val_batches=0, accumulate_grad_batches=2,
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
        quiet_trainer(tmp_path, fast_dev_run=1).fit(module, datamodule=_data(data_dir, 8))
    assert "\n" not in str(err.value)
    with pytest.raises(StrategyError, match="leave no pruning phase in 2 optimizer steps"):
        quiet_trainer(tmp_path, max_steps=2, callbacks=[AdaLoraSchedule()]).fit(
            PETModule(task="rte", strategy={**ADALORA, "tinit": 1, "tfinal": 1}), datamodule=_data(data_dir, 8))


def test_pruned_adalora_exports_to_plain_peft_with_the_same_logits(tmp_path, data_dir):
    L.seed_everything(0)
    module = PETModule(task="rte", strategy=ADALORA, learning_rate=1e-2, init_seed=0)
    quiet_trainer(tmp_path, max_steps=6, limit_val_batches=0, precision="32-true", callbacks=[AdaLoraSchedule()]).fit(
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


def _scaled_step(scale: float, poison: bool = False):
    """A fused AdamW step under a GradScaler: (parameter, optimizer, scaler, the unscaled gradient)."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(4, 3))
    optimizer = torch.optim.AdamW([p], lr=0.1, fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    loss = (p * torch.arange(12.0).view(4, 3)).sum()
    scaler.scale(loss).backward()
    true_grad = torch.arange(12.0).view(4, 3)
    if poison:
        p.grad[0, 0] = float("inf")
    return p, optimizer, scaler, true_grad


def test_gradients_are_unscaled_for_reading_under_a_loss_scaler():
    """Fused AdamW unscales inside its step, so Lightning leaves the gradients scaled before the optimizer step:
    the schedule must read (and add its regulariser to) unscaled ones, and the step must not unscale twice."""
    from types import SimpleNamespace

    from pet_lightning.callbacks.adalora import unscale_for_reading

    p, optimizer, scaler, true_grad = _scaled_step(1024.0)
    assert torch.allclose(p.grad, 1024 * true_grad)
    fake = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=scaler))
    assert unscale_for_reading(fake, optimizer) is True
    assert torch.allclose(p.grad, true_grad)
    before = p.detach().clone()
    scaler.step(optimizer)
    scaler.update()
    # The same step from the unscaled gradient: lr 0.1 moves every element by about 0.1 against its gradient's sign.
    reference = torch.nn.Parameter(before.clone())
    reference.grad = true_grad.clone()
    torch.optim.AdamW([reference], lr=0.1, fused=True).step()
    assert torch.allclose(p.detach(), reference.detach()) and not torch.equal(p.detach(), before)
    assert unscale_for_reading(SimpleNamespace(precision_plugin=SimpleNamespace(scaler=None)), optimizer) is True

    p, optimizer, scaler, _ = _scaled_step(1024.0, poison=True)
    before = p.detach().clone()
    assert unscale_for_reading(SimpleNamespace(precision_plugin=SimpleNamespace(scaler=scaler)), optimizer) is False
    scaler.step(optimizer)
    scaler.update()
    assert torch.equal(p.detach(), before) and scaler.get_scale() == 512.0  # skipped, scale backed off


def test_a_step_the_scaler_skips_leaves_the_importance_scores_finite(tmp_path, data_dir, monkeypatch):
    """An overflowing step (inf gradients) must not reach peft's moving averages (|inf - inf| = NaN for good)."""
    from types import SimpleNamespace

    import pet_lightning.callbacks.adalora as adalora

    module = PETModule(task="rte", strategy=ADALORA, learning_rate=1e-2, init_seed=0)
    tuner = adalora_model(module.model)
    tuner.rankallocator.set_total_step(100)  # steps 1-3 are all in the scoring phase
    dm = _data(data_dir, train_subset=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    schedule = AdaLoraSchedule()
    schedule._last_step = 0
    verdicts = iter([True, False, True])
    monkeypatch.setattr(adalora, "unscale_for_reading", lambda trainer, optimizer: next(verdicts))
    for step in (1, 2, 3):
        module.model.zero_grad(set_to_none=True)
        F.cross_entropy(module.model(**inputs).logits, batch["label"]).backward()
        if step == 2:  # what an overflowing fp16 backward leaves
            next(p for n, p in tuner.named_parameters() if ".lora_E." in n).grad.fill_(float("inf"))
        schedule.on_before_optimizer_step(None, module, None)
        schedule.on_train_batch_end(SimpleNamespace(global_step=step), module, None, batch, step - 1)
    scores = tuner.rankallocator.exp_avg_unc
    assert scores and all(torch.isfinite(t).all() for t in scores.values())
    assert "update_ipt" not in tuner.rankallocator.__dict__  # the skip left peft's method in place


def test_adalora_under_a_loss_scaler_with_fused_adamw_keeps_finite_scores_and_allocates(tmp_path, data_dir, tiny,
                                                                                      monkeypatch):
    """Lightning's real 16-mixed path (a GradScaler; fused AdamW, which unscales inside its step) on the CPU: the
    first steps overflow at a large initial scale and are skipped, the scores stay finite and the budget is
    allocated."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    import pet_lightning.callbacks.adalora as adalora

    verdicts: list[bool] = []
    unscale = adalora.unscale_for_reading
    monkeypatch.setattr(adalora, "unscale_for_reading", lambda t, o: verdicts.append(unscale(t, o)) or verdicts[-1])
    module = PETModule(task="rte", backbone=tiny, strategy={**ADALORA, "tinit": 2, "tfinal": 2},
                       learning_rate=1e-3, init_seed=0)
    data = GlueDataModule(task="rte", data_dir=data_dir, backbone=tiny, batch_size=4, max_length=32,
                          train_subset=56, order_seed=0)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**26))
    run = L.Trainer(accelerator="cpu", plugins=[plugin], max_steps=14, limit_val_batches=0, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir=tmp_path, callbacks=[AdaLoraSchedule()])
    run.fit(module, datamodule=data)
    assert run.optimizers[0].defaults.get("fused") is True
    assert False in verdicts and True in verdicts and len(verdicts) == 14  # overflowing steps, then finite ones
    tuner = adalora_model(module.model)
    scores = [*tuner.rankallocator.exp_avg_unc.values(), *tuner.rankallocator.exp_avg_ipt.values()]
    assert scores and all(torch.isfinite(t).all() for t in scores)
    assert tuner.peft_config["default"].rank_pattern  # the final allocation happened
