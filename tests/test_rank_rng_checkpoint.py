"""Under DDP every rank's dropout stream goes into the checkpoint and comes back to that rank on resume."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pet_lightning.seeds import all_ranks_rng_state, restore_rank_rng_state


def _rank(rank: int, init_file: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(100 + rank)  # each rank its own stream, as seeds.rank_seed gives them
        torch.rand(3)
        state = all_ranks_rng_state()
        expected = torch.rand(4)
        torch.manual_seed(0)  # a resumed process starts elsewhere
        restore_rank_rng_state(state, rank, 2)
        results[rank] = (len(state["ranks"]), torch.equal(torch.rand(4), expected))
    finally:
        dist.destroy_process_group()


def test_every_rank_resumes_its_own_dropout_stream(tmp_path):
    results = mp.Manager().dict()
    # fork: the children inherit the imports (spawn would re-import torch in each, ~30 s on a busy machine)
    mp.start_processes(_rank, args=(str(tmp_path / "init"), results), nprocs=2, join=True, start_method="fork")
    assert dict(results) == {0: (2, True), 1: (2, True)}


def test_a_single_process_state_has_no_rank_list_and_restores():
    torch.manual_seed(5)
    state = all_ranks_rng_state()
    expected = torch.rand(2)
    restore_rank_rng_state(state, 0, 1)
    assert "ranks" not in state and torch.equal(torch.rand(2), expected)
