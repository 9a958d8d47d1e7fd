"""Training samplers that carry the data-order seed (and shard the data under DDP)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DistributedSampler

GROUP_MEGABATCH = 50


class LengthGroupedSampler(DistributedSampler):
    """Shuffles, then sorts each window of ``50 * batch_size`` examples by length, so batches hold examples of
    similar length (less padding), while the window order stays random.

    It is a ``DistributedSampler`` so that Lightning keeps it in place under DDP; ``seed`` + epoch decide the
    order, exactly like the plain shuffling sampler.
    """

    def __init__(self, lengths: list[int], batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        super().__init__(lengths, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.lengths = lengths
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        window = GROUP_MEGABATCH * self.batch_size * self.num_replicas
        grouped: list[int] = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            grouped.extend(sorted(chunk, key=lambda i: -self.lengths[i]))
        padding = self.total_size - len(grouped)
        grouped += grouped[:padding]
        # Consecutive runs of batch_size go to the same rank so its batches stay length-homogeneous. The tail that
        # does not fill a batch on every rank is split evenly, so every rank gets exactly num_samples examples
        # (unequal shards would leave one rank waiting for the others' extra batch under DDP).
        step = self.batch_size * self.num_replicas
        full = len(grouped) // step * step
        indices = [
            i
            for start in range(self.rank * self.batch_size, full, step)
            for i in grouped[start : start + self.batch_size]
        ]
        share = (len(grouped) - full) // self.num_replicas
        indices += grouped[full + self.rank * share : full + (self.rank + 1) * share]
        return iter(indices)


class LengthSortedSampler(UnrepeatedDistributedSampler):
    """Evaluation order: longest examples first, so each batch pads to a length close to its members'.

    Under DDP, rank ``r`` takes every ``num_replicas``-th example of the sorted order, without repeats (repeated
    samples bias MCC and F1); the sort is stable, so equal lengths keep their dataset order. Metrics do not depend
    on the order; predictions carry ``idx``, by which writers restore the file order.
    """

    def __init__(self, lengths: list[int], num_replicas: int = 1, rank: int = 0):
        super().__init__(lengths, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.lengths = lengths

    def __iter__(self) -> Iterator[int]:
        order = sorted(range(len(self.lengths)), key=lambda i: -self.lengths[i])
        return iter(order[self.rank :: self.num_replicas])
