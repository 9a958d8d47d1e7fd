"""Tokenized examples and their batches: a dataset of feature dicts, padded per batch to its longest member."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset


class EncodedDataset(Dataset):
    """Tokenized examples: a list of feature dicts, padded later by :class:`PaddingCollator`."""

    def __init__(self, features: list[dict[str, Any]]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]

    def lengths(self) -> list[int]:
        return [_token_count(feature["input_ids"]) for feature in self.features]


def _token_count(input_ids: list) -> int:
    return max(len(ids) for ids in input_ids) if input_ids and isinstance(input_ids[0], list) else len(input_ids)


def padded_length(longest: int, multiple: int | None = None) -> int:
    """The length a batch whose longest example has ``longest`` tokens is padded to (up to ``multiple``)."""
    return -(-longest // multiple) * multiple if multiple else longest


class PaddingCollator:
    """Pads a batch to its longest sequence; multiple-choice features become ``[batch, choices, length]``.

    Args:
        pad_token_id: The tokenizer's padding id.
        pad_to_multiple_of: Round the padded length up to a multiple of this (8: the shapes fp16/bf16 tensor cores
            run at full speed on); None pads to the longest sequence only.

    A batch with ``idx`` also gets ``cache_keys``: ``(idx, fingerprint)`` per example as Python ints, computed here
    on the host so that the feature cache can look rows up without reading device tensors back every step.
    """

    token_keys = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of}: use a positive multiple (e.g. 8) or None")
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        longest = max(_token_count(feature["input_ids"]) for feature in features)
        longest = padded_length(longest, self.pad_to_multiple_of)
        batch: dict[str, torch.Tensor] = {}
        for key in self.token_keys:
            if key not in features[0]:
                continue
            pad = self.pad_token_id if key == "input_ids" else 0
            batch[key] = torch.tensor([self._pad(feature[key], longest, pad) for feature in features])
        for key, value in features[0].items():
            if key in self.token_keys:
                continue
            dtype = torch.float32 if isinstance(value, float) else torch.long
            batch[key] = torch.tensor([feature[key] for feature in features], dtype=dtype)
        if "idx" in batch:
            from pet_lightning.feature_cache import fingerprint

            batch["cache_keys"] = list(zip(batch["idx"].tolist(), fingerprint(batch["input_ids"]).tolist()))
        return batch

    @staticmethod
    def _pad(ids: list, length: int, pad: int) -> list:
        if ids and isinstance(ids[0], list):
            return [row + [pad] * (length - len(row)) for row in ids]
        return ids + [pad] * (length - len(ids))


def loader_options(trainer: Any, num_workers: int) -> dict[str, Any]:
    """DataLoader settings that follow the device: pinned host memory when training on CUDA (asynchronous copies),
    workers kept alive between epochs (and evaluations) when there are any."""
    accelerator = getattr(trainer, "accelerator", None)
    on_cuda = type(accelerator).__name__ == "CUDAAccelerator" and torch.cuda.is_available()
    return {"pin_memory": on_cuda, "persistent_workers": num_workers > 0}


__all__ = ["EncodedDataset", "PaddingCollator", "loader_options"]


def private_generator(seed: int) -> torch.Generator:
    """A generator of the loader's own: every DataLoader iterator draws a base seed from its generator, and
    drawing it from torch's global one would shift the dropout stream with each evaluation or sanity check (a
    resumed run would then not replay an uninterrupted one)."""
    return torch.Generator().manual_seed(seed)


class EncodeOnFirstUse(dict):
    """A dict of encoded splits that builds each entry the first time it is read."""

    def __init__(self, builders: dict[str, Callable[[], Any]]):
        super().__init__()
        self._builders = builders

    def __missing__(self, key: str) -> Any:
        value = self[key] = self._builders[key]()
        return value
