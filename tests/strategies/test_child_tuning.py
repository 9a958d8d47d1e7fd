"""Child-Tuning_D: Fisher-information masks on the real MiniLM and a small RTE subset."""

from __future__ import annotations

import pytest
import torch

from pet_lightning import PETModule
from pet_lightning.callbacks import ChildTuningFisher
from pet_lightning.strategies import StrategyError, build_strategy
from pet_lightning.strategies.child_tuning import top_fraction_masks
from tests.helpers.data import small_glue
from tests.helpers.probes import FirstStepGrads
from tests.helpers.trainers import quiet_trainer

RESERVE_P = 0.1


@pytest.fixture(scope="module")
def trained(data_dir):
    module = PETModule(task="rte", strategy={"name": "child_tuning_d", "reserve_p": RESERVE_P}, learning_rate=1e-3,
                       init_seed=0, warmup_ratio=0.0, hidden_dropout=0.0)
    pretrained = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    probe = FirstStepGrads()
    data = small_glue(data_dir)
    trainer = quiet_trainer(precision="32-true", limit_val_batches=0, max_steps=2,
                            callbacks=[ChildTuningFisher(), probe])
    trainer.fit(module, datamodule=data)
    return module, pretrained, probe.grads, trainer, data


def test_fisher_is_the_summed_squared_gradient_over_the_training_batches(trained, data_dir):
    module, pretrained, _, _, _ = trained
    name = "bert.encoder.layer.5.output.dense.weight"
    fresh = PETModule(task="rte", strategy="full", init_seed=0, hidden_dropout=0.0).eval()
    data = small_glue(data_dir)
    data.setup("fit")
    expected = torch.zeros_like(pretrained[name])
    param = dict(fresh.model.named_parameters())[name]
    for batch in data.train_dataloader():
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        loss = torch.nn.functional.cross_entropy(fresh.model(**inputs).logits, batch["label"])
        (grad,) = torch.autograd.grad(loss, param)
        expected += grad**2
    assert torch.allclose(module.report.inputs["fisher"][name], expected, rtol=1e-4, atol=1e-12)


def test_mask_is_the_top_reserve_p_of_encoder_scalars_by_fisher_score(trained):
    module, _, _, _, _ = trained
    fisher, masks = module.report.inputs["fisher"], module.report.masks
    assert set(masks) == set(fisher)
    assert all(".encoder.layer." in name for name in masks)
    assert len(masks) == 6 * 16  # every tensor of the six transformer layers
    scores = torch.cat([fisher[n].flatten() for n in masks])
    chosen = torch.cat([masks[n].flatten() for n in masks])
    assert int(chosen.sum()) == round(RESERVE_P * scores.numel())
    assert float(scores[chosen].min()) >= float(scores[~chosen].max())
    assert module.report.trainable == int(chosen.sum()) + sum(
        p.numel() for n, p in module.model.named_parameters() if n.startswith("bert.") and n not in masks
    )


def test_masked_gradients_are_zero_and_masked_elements_stay_pretrained(trained):
    module, pretrained, grads, trainer, _ = trained
    masks = module.report.masks
    assert all(not grads[n][~mask].any() for n, mask in masks.items())
    assert any(grads[n][mask].any() for n, mask in masks.items())
    parameters = dict(module.model.named_parameters())
    assert all(torch.equal(parameters[n][~mask], pretrained[n][~mask]) for n, mask in masks.items())
    assert any(not torch.equal(parameters[n][mask], pretrained[n][mask]) for n, mask in masks.items())
    # Unmasked parts of the backbone (embeddings) and the head train fully.
    assert not torch.equal(parameters["bert.embeddings.word_embeddings.weight"],
                           pretrained["bert.embeddings.word_embeddings.weight"])
    # Masked tensors get no weight decay (it would move their frozen elements).
    masked_ids = {id(parameters[n]) for n in masks}
    for group in trainer.optimizers[0].param_groups:
        if any(id(p) in masked_ids for p in group["params"]):
            assert group["weight_decay"] == 0.0


def test_top_fraction_uses_one_threshold_across_tensors():
    scores = {"a": torch.tensor([5.0, 1.0, 0.5]), "b": torch.tensor([[4.0, 0.1], [3.0, 0.2]])}
    masks = top_fraction_masks(scores, 3 / 7)
    assert masks["a"].tolist() == [True, False, False]
    assert masks["b"].tolist() == [[True, False], [True, False]]


def test_fit_without_the_fisher_callback_and_bad_settings_are_one_line_errors(data_dir):
    module = PETModule(task="rte", strategy="child_tuning_d")
    with pytest.raises(StrategyError, match="add pet_lightning.callbacks.ChildTuningFisher"):
        run = quiet_trainer(precision="32-true", limit_val_batches=0, max_steps=1)
        run.fit(module, datamodule=small_glue(data_dir))
    with pytest.raises(StrategyError, match="reserve_p=0"):
        build_strategy("child_tuning_d", reserve_p=0)
    with pytest.raises(StrategyError, match="where='ffn'"):
        build_strategy("child_tuning_d", where="ffn")
