"""``HeadFeatures``: the head's inputs (and MLP hidden layer) on train and the reported split, after testing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pet_lightning import PETModule
from pet_lightning.callbacks import HeadFeatures
from pet_lightning.callbacks.features import FEATURES_FILE
from pet_lightning.strategies.base import backbone_of, unwrap
from tests.helpers.data import small_glue
from tests.helpers.trainers import quiet_trainer

HIDDEN = 32  # the tiny backbone's width
HEAD_HIDDEN = 8
TRAIN = 16
BATCH = 8


def _run(tmp_path, data_dir, tiny, max_examples: int):
    dm = small_glue(data_dir, backbone=tiny, batch_size=BATCH, train_subset=TRAIN)
    module = PETModule(backbone=tiny, task="rte", strategy="full", head="mlp", head_hidden_size=HEAD_HIDDEN,
                       learning_rate=1e-3, warmup_ratio=0.0, init_seed=0)
    callback = HeadFeatures(max_examples=max_examples)
    trainer = quiet_trainer(tmp_path, precision="32-true", limit_val_batches=0, callbacks=[callback], max_steps=1)
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    path = Path(tmp_path) / FEATURES_FILE
    assert callback.path == path and path.is_file()
    with np.load(path) as saved:
        arrays = {key: saved[key] for key in saved.files}
    return dm, module, arrays


@pytest.mark.parametrize("max_examples", [10, 100])
def test_npz_holds_arrays_of_the_right_shapes(tmp_path, data_dir, tiny, max_examples):
    dm, _module, arrays = _run(tmp_path, data_dir, tiny, max_examples)
    assert set(arrays) == {"train_inputs", "train_labels", "train_hidden", "report_inputs", "report_labels",
                           "report_hidden"}
    train_rows = min(max_examples, TRAIN)
    (report_name, report_rows), = [(name, len(rows)) for name, rows in dm.plan.report.items()]
    assert report_rows > 0
    assert arrays["train_inputs"].shape == (train_rows, HIDDEN)
    assert arrays["train_labels"].shape == (train_rows,)
    assert arrays["train_hidden"].shape == (train_rows, HEAD_HIDDEN)
    assert arrays["report_inputs"].shape == (report_rows, HIDDEN)
    assert arrays["report_labels"].shape == (report_rows,)
    assert arrays["report_hidden"].shape == (report_rows, HEAD_HIDDEN)
    # The reported split is kept whole (evaluated longest first: compare the label counts).
    expected = sorted(int(example["label"]) for example in dm.plan.report[report_name])
    assert sorted(arrays["report_labels"].tolist()) == expected
    # Hidden activations are after ReLU.
    assert (arrays["train_hidden"] >= 0).all() and (arrays["report_hidden"] >= 0).all()


def test_train_inputs_are_what_the_head_reads_on_the_first_batch(tmp_path, data_dir, tiny):
    dm, module, arrays = _run(tmp_path, data_dir, tiny, max_examples=TRAIN)
    model = unwrap(module.model)
    head = model.classifier
    seen: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    batch = next(iter(dm.eval_dataloader("train")))  # the callback reads train in file order
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    module.model.eval()
    try:
        with torch.no_grad():
            module.model(**inputs)
            pooled = backbone_of(model)(**inputs).pooler_output
    finally:
        handle.remove()
    (by_hook,) = seen
    rows = len(batch["label"])  # an evaluation batch
    assert by_hook.shape == (rows, HIDDEN)
    # BERT's MLP reads the (pretrained) pooler's output.
    assert torch.allclose(by_hook, pooled, atol=1e-6)
    saved = torch.from_numpy(arrays["train_inputs"][:rows])
    assert torch.allclose(saved, by_hook, atol=1e-6)
    assert arrays["train_labels"][:rows].tolist() == batch["label"].tolist()
    # And the hidden layer is ReLU(dense(inputs)).
    with torch.no_grad():
        hidden = torch.relu(head.dense(torch.from_numpy(arrays["train_inputs"])))
    assert torch.allclose(torch.from_numpy(arrays["train_hidden"]), hidden, atol=1e-6)


def test_max_examples_must_be_positive():
    with pytest.raises(ValueError, match="max_examples=0"):
        HeadFeatures(max_examples=0)
