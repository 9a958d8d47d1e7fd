"""``HeadFeatures``: save the features that enter the task head, on train and on the reported split (EH-FT Fig. 4).

After ``trainer.test`` (which a sweep runs on the *selected* checkpoint) the callback runs the model in eval mode
over up to ``max_examples`` training examples and every reported example, and writes
``<default_root_dir>/head_features.npz`` with ``train_inputs``, ``train_labels``, ``report_inputs``,
``report_labels`` and, for the MLP head (``head="mlp"``), its hidden layer after ReLU (``*_hidden``). The head's
input is read by a forward pre-hook on the head module (the first token for heads that receive the sequence), so
it is what the head saw, with whatever the strategy injected (LoRA, prefixes, BitFit's biases) still in place.
Under DDP every rank reads its shard and rank 0 writes all of them, in the split's order.

>>> trainer = L.Trainer(max_epochs=1, callbacks=[HeadFeatures(max_examples=500)])
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from pet_lightning.heads import MLPHead
from pet_lightning.strategies.base import backbone_of, unwrap

FEATURES_FILE = "head_features.npz"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def head_module(model: nn.Module) -> nn.Module:
    """The module holding the task head (``classifier`` of a Hugging Face model, possibly an MLP)."""
    hf = unwrap(model)
    head = getattr(hf, "classifier", None)
    if head is None or any(p is q for p in head.parameters() for q in backbone_of(hf).parameters()):
        raise ValueError(f"HeadFeatures finds no `classifier` head in {type(hf).__name__}: use a sequence "
                         "classification model")
    return head


def collect(module: L.LightningModule, loader, limit: int | None = None) -> dict[str, np.ndarray]:
    """Head inputs (and MLP hidden activations) with labels over ``loader``, at most ``limit`` examples."""
    head = head_module(module.model)
    seen: dict[str, list[torch.Tensor]] = {"inputs": [], "hidden": []}

    def read_input(_module, args):
        features = args[0]
        seen["inputs"].append((features[:, 0] if features.dim() == 3 else features).detach().float().cpu())

    handles = [head.register_forward_pre_hook(read_input)]
    # peft keeps a trained head in a ModulesToSaveWrapper: its active copy is the MLP.
    copies = getattr(head, "modules_to_save", None)
    mlp = next(iter(copies.values())) if copies else head
    if isinstance(mlp, MLPHead):
        handles.append(mlp.dense.register_forward_hook(
            lambda _m, _a, output: seen["hidden"].append(torch.relu(output).detach().float().cpu())))
    labels: list[torch.Tensor] = []
    was_training = module.model.training
    module.model.eval()
    # Under the fit's autocast (bf16 / fp16 runs): the features the head saw, at mixed-precision speed and memory.
    trainer = getattr(module, "_trainer", None)
    autocast = trainer.precision_plugin.forward_context() if trainer is not None else contextlib.nullcontext()
    try:
        with torch.no_grad(), autocast:
            for batch in loader:
                inputs = {k: batch[k].to(module.device) for k in MODEL_INPUTS if k in batch}
                module.model(**inputs)
                labels.append(batch["label"].detach().cpu())
                if limit is not None and sum(len(x) for x in labels) >= limit:
                    break
    finally:
        for handle in handles:
            handle.remove()
        module.model.train(was_training)
    result = {"inputs": torch.cat(seen["inputs"]).numpy(), "labels": torch.cat(labels).numpy()}
    if seen["hidden"]:
        result["hidden"] = torch.cat(seen["hidden"]).numpy()
    return {key: value[:limit] if limit is not None else value for key, value in result.items()}


def gather_in_order(trainer: L.Trainer, loader, module: L.LightningModule,
                    limit: int | None = None) -> dict[str, np.ndarray]:
    """:func:`collect` over this rank's shard of ``loader``, gathered from every rank (a collective under DDP) and
    put back in the order a single process reads: the same arrays whatever the number of processes."""
    local = collect(module, loader, limit)
    # Where each collected example sits in the split (the sampler's dataset indices, in the order it yields them).
    local["position"] = np.asarray(list(loader.sampler)[: len(local["labels"])], dtype=np.int64)
    world = getattr(trainer, "world_size", 1)
    if world <= 1:
        parts = [local]
    else:
        import torch.distributed as dist

        parts = [None] * world
        dist.all_gather_object(parts, local)
    order = np.argsort(np.concatenate([part["position"] for part in parts]), kind="stable")
    merged = {key: np.concatenate([part[key] for part in parts])[order] for key in local if key != "position"}
    return {key: value[:limit] if limit is not None else value for key, value in merged.items()}


class HeadFeatures(Callback):
    """Write the head's input features on train and the reported split after testing (see the module docstring).

    Args:
        max_examples: Training examples to keep (the reported split is kept whole).
        filename: File name under ``trainer.default_root_dir``.
    """

    def __init__(self, max_examples: int = 1000, filename: str = FEATURES_FILE):
        if max_examples < 1:
            raise ValueError(f"max_examples={max_examples}: keep at least one training example")
        self.max_examples = max_examples
        self.filename = filename
        self.path: Path | None = None

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "eval_dataloader"):
            raise ValueError("HeadFeatures reads the splits of a pet_lightning TaskDataModule: use one")
        # Sequential loaders: the training sampler has run out (or would resume mid-epoch) after the fit. Under DDP
        # each rank reads its shard, and the shards are gathered back into the split's order.
        train = gather_in_order(trainer, datamodule.eval_dataloader("train"), pl_module, self.max_examples)
        report = gather_in_order(trainer, datamodule.eval_dataloader("test"), pl_module)
        arrays = {f"train_{k}": v for k, v in train.items()} | {f"report_{k}": v for k, v in report.items()}
        self.path = Path(trainer.default_root_dir) / self.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if trainer.is_global_zero:
            np.savez_compressed(self.path, **arrays)
