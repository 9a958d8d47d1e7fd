"""Training samplers resume mid-epoch: the next iteration of the saved epoch skips exactly what was trained."""

from __future__ import annotations

import pytest

from pet_lightning.data.sampling import LengthGroupedSampler, ResumableDistributedSampler, resume_sampler


@pytest.mark.parametrize("rank", [0, 1])
def test_resumed_sampler_continues_the_same_order_in_its_epoch_only(rank):
    def sampler():
        return ResumableDistributedSampler(list(range(50)), num_replicas=2, rank=rank, shuffle=True, seed=7)

    whole = sampler()
    whole.set_epoch(3)
    order = list(whole)
    resumed = sampler()
    resumed.resume_at(epoch=3, samples=8)
    resumed.set_epoch(3)
    assert list(resumed) == order[8:]
    assert list(resumed) == order  # once: the next pass over the epoch is whole again
    other_epoch = sampler()
    other_epoch.resume_at(epoch=2, samples=8)
    other_epoch.set_epoch(3)
    assert list(other_epoch) == order  # a position of another epoch does not apply
    assert len(resumed) == len(whole)  # Lightning counts the skipped batches as done


def test_length_grouped_sampler_resumes_too():
    lengths = [(i * 37) % 23 + 1 for i in range(40)]
    whole = LengthGroupedSampler(lengths, batch_size=4, seed=1)
    whole.set_epoch(1)
    resumed = LengthGroupedSampler(lengths, batch_size=4, seed=1)
    resumed.resume_at(1, 12)
    resumed.set_epoch(1)
    assert list(resumed) == list(whole)[12:]


def test_a_position_saved_under_another_data_order_is_refused():
    sampler = ResumableDistributedSampler(list(range(10)), num_replicas=1, rank=0, seed=0)
    position = {"epoch": 0, "batches": 2, "batch_size": 4, "world_size": 1, "order_seed": 0, "examples": 10}
    now = {"batch_size": 8, "world_size": 1, "order_seed": 0, "examples": 10}
    with pytest.raises(ValueError, match=r"saved mid-epoch under another data order \(batch_size 4 -> 8\)"):
        resume_sampler(sampler, position, now, "run.ckpt")
