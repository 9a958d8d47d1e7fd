"""Training samplers that carry the data-order seed (and shard the data under DDP), and resume mid-epoch.

The order of an epoch is a pure function of ``seed + epoch`` (a fresh generator per epoch), so the sampler's
whole "generator state" is its epoch; the position within the epoch is the number of examples this rank has
consumed. :meth:`ResumableMixin.resume_at` makes the next iteration of that epoch skip what the interrupted run
had already trained on, so a run resumed from a mid-epoch checkpoint sees exactly the batches an uninterrupted run
would have seen next. The length stays the whole epoch's: Lightning counts the skipped batches as done.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DistributedSampler

GROUP_MEGABATCH = 50


class ResumableMixin:
    """Skips the first ``samples`` indices of epoch ``epoch`` once (see :meth:`resume_at`); mix into a sampler
    that has ``epoch`` (``DistributedSampler``)."""

    epoch: int
    _resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, samples: int) -> None:
        """The next iteration over ``epoch`` starts after its first ``samples`` indices (of this rank)."""
        if samples < 0:
            raise ValueError(f"cannot resume {samples} examples into an epoch: use a count >= 0")
        self._resume = (epoch, samples) if samples else None

    def _resumed(self, indices: Iterator[int]) -> Iterator[int]:
        pending, self._resume = self._resume, None
        if pending is None or pending[0] != self.epoch:
            return indices
        return itertools.islice(indices, pending[1], None)


# Lightning's warning that a mid-epoch resume restarts the epoch's data: wrong for the samplers here, which
# continue it (pet_lightning.callbacks.resume silences it around the fits the CLI and sweeps run).
MID_EPOCH_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"


def train_position(trainer, sampler: ResumableMixin, settings: dict[str, int]) -> dict[str, int]:
    """Where the training order stands: the sampler's epoch, the batches of it trained (Lightning's own count,
    not the sampler's, which runs ahead by what the loader prefetched) and the settings the order depends on."""
    batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    return {"epoch": int(sampler.epoch), "batches": int(batches), **settings}


def resume_sampler(sampler: ResumableMixin, position: dict[str, int], settings: dict[str, int], source) -> None:
    """Make ``sampler`` continue from ``position``; refuse when the order it was saved under is not this one."""
    changed = {key: (position.get(key), value) for key, value in settings.items() if position.get(key) != value}
    if changed:
        what = ", ".join(f"{key} {saved} -> {now}" for key, (saved, now) in changed.items())
        raise ValueError(
            f"checkpoint {source} was saved mid-epoch under another data order ({what}): resume with the data "
            "settings of the interrupted run, or from an end-of-epoch checkpoint"
        )
    sampler.resume_at(position["epoch"], position["batches"] * position["batch_size"])


class ResumableDistributedSampler(ResumableMixin, DistributedSampler):
    """``DistributedSampler`` (shuffled by ``seed + epoch``) that can resume mid-epoch."""

    def __iter__(self) -> Iterator[int]:
        return self._resumed(super().__iter__())


class LengthGroupedSampler(ResumableMixin, DistributedSampler):
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
        return self._resumed(iter(indices))


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
