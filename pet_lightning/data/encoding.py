"""Tokenized examples and their batches: a dataset of feature dicts, padded per batch to its longest member."""

from __future__ import annotations

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


class PaddingCollator:
    """Pads a batch to its longest sequence; multiple-choice features become ``[batch, choices, length]``."""

    token_keys = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(_token_count(feature["input_ids"]) for feature in features)
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
        return batch

    @staticmethod
    def _pad(ids: list, length: int, pad: int) -> list:
        if ids and isinstance(ids[0], list):
            return [row + [pad] * (length - len(row)) for row in ids]
        return ids + [pad] * (length - len(ids))


__all__ = ["EncodedDataset", "PaddingCollator"]
