"""Cache a frozen encoder's features so linear probing trains the head alone after the first epoch.

When nothing in the pretrained encoder trains (``frozen`` / linear probing, LP-FT stage 1), the encoder maps
each example to the same features every epoch. :class:`FeatureCache` computes them once, keyed by split and
example ``idx``, and afterwards runs only the task head on the stored features.

What is stored is generic across Hugging Face heads: the encoder's first-token hidden state
(``last_hidden_state[:, 0]``, read by the RoBERTa, ELECTRA, DeBERTa and DistilBERT heads) and, when the encoder
has one, its ``pooler_output`` (read by the BERT head). The head is then run by the model's own ``forward``
with the encoder swapped for a stub that returns the stored fields, so the head code is never re-implemented.
On its first batch the cache checks that the head gives the same logits from the stored fields as from the
full encoder output; a head that reads more than the first token (mean pooling, last-token heads) fails that
check with a clear error.

Features are computed with the encoder in eval mode (no encoder dropout), as linear probing on fixed features
does; the head keeps its own dropout in training. Each stored example carries a fingerprint of its tokens, so a
changed dataset (another ``max_length``, another subset under the same ``idx``) is recomputed, never reused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from pet_lightning.errors import PetLightningError
from pet_lightning.strategies.base import backbone_of, unwrap

# Logits from cached features and from the full encoder differ only by float rounding of the padded shapes.
CHECK_ATOL = 1e-4


class FeatureCacheError(PetLightningError, RuntimeError):
    """Features cannot be cached for this model; the message says why and what to do."""


def fingerprint(input_ids: torch.Tensor) -> torch.Tensor:
    """One int64 per example from its token ids (position-weighted), to detect a changed example under an idx."""
    flat = input_ids.reshape(input_ids.shape[0], -1).long()
    weights = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=torch.long)
    return (flat * weights).sum(dim=1) * 1_000_003 + (flat != 0).sum(dim=1)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode and restore every submodule's own mode afterwards."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def backbone_trains(model: nn.Module) -> bool:
    """True when any encoder parameter requires grad (then its features change and must not be cached)."""
    return any(p.requires_grad for p in backbone_of(unwrap(model)).parameters())


class FeatureCache:
    """Per-split store of encoder features, and the head run on them.

    ``logits(model, inputs, idx, scope)`` returns what ``model(**inputs).logits`` would (with the encoder in
    eval mode), computing the encoder only for the examples of a batch not stored yet under ``scope``.
    """

    def __init__(self) -> None:
        self.store: dict[str, dict[int, tuple[int, torch.Tensor, torch.Tensor | None]]] = {}
        self.checked = False
        self.encoder_calls = 0
        self.rows_encoded = 0

    def clear(self) -> None:
        self.store.clear()
        self.checked = False

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.store.values())

    def nbytes(self) -> int:
        total = 0
        for rows in self.store.values():
            for _, cls, pooled in rows.values():
                total += cls.numel() * cls.element_size()
                total += 0 if pooled is None else pooled.numel() * pooled.element_size()
        return total

    # ------------------------------------------------------------------------------------------- encoder
    @staticmethod
    def _flat(inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[int, ...]]:
        """Multiple-choice inputs ``[B, C, L]`` are flattened to ``[B*C, L]``, as the HF heads do."""
        lead = tuple(inputs["input_ids"].shape[:-1])
        return {k: v.reshape(-1, v.shape[-1]) for k, v in inputs.items()}, lead

    @staticmethod
    def _rows(inputs: dict[str, torch.Tensor], rows: list[int]) -> dict[str, torch.Tensor]:
        """The batch's examples ``rows`` (first dimension), every input tensor alike."""
        index = torch.tensor(rows, device=inputs["input_ids"].device)
        return {name: value.index_select(0, index) for name, value in inputs.items()}

    def _encode(self, model: nn.Module, inputs: dict[str, torch.Tensor]):
        encoder = backbone_of(unwrap(model))
        flat, lead = self._flat(inputs)
        self.encoder_calls += 1
        with torch.no_grad(), eval_mode(encoder):
            out = encoder(**flat, return_dict=True)
        # A copy: a view would keep the whole [batch, length, hidden] output alive in the cache.
        cls = out.last_hidden_state[:, 0].reshape(*lead, -1).clone()
        pooled = getattr(out, "pooler_output", None)
        return out, cls, (None if pooled is None else pooled.reshape(*lead, -1))

    @contextlib.contextmanager
    def _stubbed(self, model: nn.Module, cls: torch.Tensor, pooled: torch.Tensor | None) -> Iterator[None]:
        """Swap the encoder's forward for one that returns the stored fields (as a one-token sequence)."""
        encoder = backbone_of(unwrap(model))
        hidden = cls.reshape(-1, 1, cls.shape[-1])
        pooler = None if pooled is None else pooled.reshape(-1, pooled.shape[-1])

        def stub(*args: Any, **kwargs: Any) -> BaseModelOutputWithPooling:
            return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=pooler)

        encoder.forward = stub
        try:
            yield
        finally:
            del encoder.forward

    def head_logits(self, model: nn.Module, inputs: dict[str, torch.Tensor], cls, pooled) -> torch.Tensor:
        with self._stubbed(model, cls, pooled):
            return model(**inputs).logits

    # ------------------------------------------------------------------------------------------- checks
    def _check(self, model: nn.Module, inputs: dict[str, torch.Tensor], cls, pooled) -> None:
        with torch.no_grad(), eval_mode(model):
            full = model(**inputs).logits
            try:
                cached = self.head_logits(model, inputs, cls, pooled)
            except (IndexError, RuntimeError, ValueError) as err:
                raise FeatureCacheError(
                    f"the head of {type(unwrap(model)).__name__} cannot run on the encoder's first token and pooler "
                    f"({type(err).__name__}: {err}): build the module with cache_features=False"
                ) from err
        if not torch.allclose(full.float(), cached.float(), atol=CHECK_ATOL, rtol=1e-3):
            gap = (full.float() - cached.float()).abs().max().item()
            raise FeatureCacheError(
                f"the head of {type(unwrap(model)).__name__} reads more than the encoder's first token and pooler "
                f"(cached logits differ by {gap:.2e}): build the module with cache_features=False"
            )
        self.checked = True

    # ------------------------------------------------------------------------------------------- lookup
    def logits(self, model: nn.Module, inputs: dict[str, torch.Tensor], idx: torch.Tensor, scope: str,
               cache_keys: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """Head logits for the batch from stored features (computing and storing them on a miss).

        ``cache_keys`` (``(idx, fingerprint)`` per example, from the collator) spares reading ``idx`` and the
        fingerprints back from the device: two host-device syncs per step on a GPU.
        """
        rows = self.store.setdefault(scope, {})
        if rows and next(iter(rows.values()))[1].device != inputs["input_ids"].device:
            rows.clear()  # filled on another device (a GPU fit, then a CPU validate of the same module)
        if cache_keys is None:
            cache_keys = list(zip(idx.tolist(), fingerprint(inputs["input_ids"]).tolist()))
        keys = [k for k, _ in cache_keys]
        prints = [p for _, p in cache_keys]
        # Only the rows not stored yet go through the encoder: under DDP each rank sees a reshuffled shard every
        # epoch, and a batch-level all-or-nothing hit would run the encoder on nearly every step for epochs.
        missing = [i for i, (k, p) in enumerate(zip(keys, prints)) if k not in rows or rows[k][0] != p]
        if missing:
            part = inputs if len(missing) == len(keys) else self._rows(inputs, missing)
            _, new_cls, new_pooled = self._encode(model, part)
            if not self.checked:
                self._check(model, part, new_cls, new_pooled)
            self.rows_encoded += len(missing)
            for j, i in enumerate(missing):
                rows[keys[i]] = (prints[i], new_cls[j], None if new_pooled is None else new_pooled[j])
        cls = torch.stack([rows[k][1] for k in keys])
        stored = [rows[k][2] for k in keys]
        pooled = None if stored[0] is None else torch.stack(stored)
        return self.head_logits(model, inputs, cls, pooled)
