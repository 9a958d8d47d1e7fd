"""Length-grouped training batches and length-sorted evaluation: same data, less padding, same metrics."""

from __future__ import annotations

import random

import lightning as L
import pytest
import torch
from torch.utils.data import DistributedSampler

from pet_lightning import PETModule
from pet_lightning.data import GlueDataModule
from pet_lightning.data.sampling import LengthGroupedSampler, LengthSortedSampler

_RNG = random.Random(0)
LENGTHS = [_RNG.randint(5, 120) for _ in range(1000)]
BATCH = 8


def _padded_tokens(order: list[int], lengths: list[int], batch_size: int) -> int:
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def test_grouped_order_is_a_seeded_permutation_that_changes_per_epoch():
    sampler = LengthGroupedSampler(LENGTHS, BATCH, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(len(LENGTHS)))
    assert list(LengthGroupedSampler(LENGTHS, BATCH, seed=3)) == first
    assert list(LengthGroupedSampler(LENGTHS, BATCH, seed=4)) != first
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(second) == sorted(first)
    again = LengthGroupedSampler(LENGTHS, BATCH, seed=3)
    again.set_epoch(1)
    assert list(again) == second


def test_grouped_order_shards_disjointly_over_two_replicas():
    shards = [list(LengthGroupedSampler(LENGTHS, BATCH, num_replicas=2, rank=r, seed=0)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(LENGTHS) // 2
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(len(LENGTHS)))


def test_grouping_reduces_padding_against_plain_shuffling():
    plain = list(DistributedSampler(LENGTHS, num_replicas=1, rank=0, shuffle=True, seed=0))
    grouped = list(LengthGroupedSampler(LENGTHS, BATCH, seed=0))
    assert _padded_tokens(grouped, LENGTHS, BATCH) < 0.7 * _padded_tokens(plain, LENGTHS, BATCH)


def test_sorted_evaluation_order_is_longest_first_and_unrepeated_under_two_replicas():
    order = list(LengthSortedSampler(LENGTHS))
    assert sorted(order) == list(range(len(LENGTHS)))
    assert [LENGTHS[i] for i in order] == sorted(LENGTHS, reverse=True)
    odd = LENGTHS[:999]
    shards = [list(LengthSortedSampler(odd, num_replicas=2, rank=r)) for r in range(2)]
    assert [len(s) for s in shards] == [500, 499]  # no repeated example to even the shards out
    assert sorted(shards[0] + shards[1]) == list(range(999))
    assert _padded_tokens(order, LENGTHS, BATCH) < 0.6 * _padded_tokens(list(range(1000)), LENGTHS, BATCH)


@pytest.fixture(scope="module")
def rte(data_dir):
    def make(**kwargs) -> GlueDataModule:
        datamodule = GlueDataModule(task="rte", data_dir=data_dir, max_length=64, batch_size=16, **kwargs)
        datamodule.setup("fit")
        return datamodule

    return make


def test_eval_loaders_sort_by_length_and_prediction_keeps_file_order(rte):
    datamodule = rte()
    lengths = []
    for batch in datamodule.val_dataloader()[0]:
        lengths.extend(batch["attention_mask"].sum(dim=1).tolist())
    assert lengths == sorted(lengths, reverse=True)
    unsorted = rte(sort_eval_by_length=False)
    padded = sum(b["input_ids"].numel() for b in datamodule.val_dataloader()[0])
    assert padded < sum(b["input_ids"].numel() for b in unsorted.val_dataloader()[0])
    idx = torch.cat([b["idx"] for b in datamodule.predict_dataloader()[0]]).tolist()
    assert idx == [example["idx"] for example in datamodule.plan.predict]


def test_sorted_evaluation_gives_the_same_metrics(rte):
    module = PETModule(strategy="frozen", init_seed=0, cache_features=False).eval()
    settings = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False}
    # dev_split validates on half of dev: enough examples of mixed lengths, half the time.
    sorted_metrics = L.Trainer(**settings).validate(module, datamodule=rte(protocol="dev_split"), verbose=False)[0]
    plain_metrics = L.Trainer(**settings).validate(
        module, datamodule=rte(protocol="dev_split", sort_eval_by_length=False), verbose=False
    )[0]
    assert sorted_metrics.keys() == plain_metrics.keys()
    for key, value in sorted_metrics.items():
        assert value == pytest.approx(plain_metrics[key], abs=1e-5), key
