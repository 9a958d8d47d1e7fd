"""Two seeds instead of one: weight initialisation vs. data order.

The "Revisiting Parameter-Efficient Tuning" study separates the randomness of a run in two:

* ``init_seed`` (:class:`~pet_lightning.module.PETModule`): everything built with the model, i.e. the task head,
  injected modules (adapters, LoRA), random masks. The model is built under a forked RNG seeded with it, so
  building it does not consume the global random stream.
* ``order_seed`` (:class:`~pet_lightning.data.TaskDataModule`): the shuffling of training batches *and* dropout.
  The sampler is seeded with it; at fit start :func:`seed_training_randomness` re-seeds torch's global RNG with
  it, which is the stream dropout draws from.

``seed`` (``seed_everything`` in a config, or :func:`resolve_seeds` with ``seed=...``) sets both. Hence changing
only ``order_seed`` leaves the initial weights identical, and changing only ``init_seed`` leaves the batch order
and the dropout masks identical.

Checkpoints written by ``PETModule`` carry the dropout stream's state (:func:`dropout_rng_state`); a fit resumed
from one continues that stream (:func:`restore_dropout_rng_state`), so with dropout on it still equals the
uninterrupted run.
"""

from __future__ import annotations

import random
from typing import Literal

import lightning as L
import torch

from pet_lightning.data.contract import task_data

SeedMode = Literal["both", "init", "order"]
SEED_MODES: tuple[str, ...] = ("both", "init", "order")

# The 20 seeds of the study's multi-run scripts (guanzhchen/PETuning, passed as both --seed and --model_seed).
STUDY_SEEDS: tuple[int, ...] = (
    1111, 2222, 3333, 4444, 5555, 6666, 7777, 8888, 9999, 101010,
    111111, 222222, 333333, 444444, 555555, 666666, 777777, 888888, 999999, 10101010,
)

def resolve_seeds(seed: int, mode: SeedMode = "both", fixed: int = STUDY_SEEDS[0]) -> tuple[int, int]:
    """``(init_seed, order_seed)`` for one run of a multi-seed study.

    ``both`` varies both with ``seed`` (the study's default); ``init`` varies only the weight initialisation and
    holds the data order at ``fixed``; ``order`` varies only the data order (and dropout) and holds the
    initialisation at ``fixed``. The last two give the study's Table 4 (weight-init vs. data-order variance).
    """
    if mode == "both":
        return seed, seed
    if mode == "init":
        return seed, fixed
    if mode == "order":
        return fixed, seed
    raise ValueError(f"unknown seed mode {mode!r}: choose one of {', '.join(SEED_MODES)}")


def order_seed_of(trainer: L.Trainer) -> int | None:
    """The data-order seed of the trainer's datamodule, or None when it has none (global seeding applies)."""
    data = task_data(trainer)
    return data.order_seed if data else None


def seed_training_randomness(trainer: L.Trainer) -> int | None:
    """Re-seed torch's global RNG (dropout) from the data-order seed; returns the seed used, or None.

    Under DDP every rank gets its own stream (:func:`rank_seed`). Called at fit start, after the model is built,
    so the initial weights never depend on the order seed. A fit
    resumed from a checkpoint then replaces this stream by the one stored in the checkpoint (at train start).
    Without an order seed nothing is re-seeded and dropout follows ``seed_everything``, which then sets both seeds.
    """
    order_seed = order_seed_of(trainer)
    if order_seed is None:
        return None
    seed = rank_seed(order_seed, getattr(trainer, "global_rank", 0))
    torch.manual_seed(seed)
    return seed


def rank_seed(order_seed: int, rank: int) -> int:
    """The dropout seed of one process: ``order_seed`` on rank 0 (single-process runs are unchanged), another
    32-bit seed drawn from (order seed, rank) on the others, so DDP ranks do not draw identical dropout masks.

    Not ``order_seed + rank * 2**32``: torch's CPU generator keeps only the low 32 bits of a seed.
    """
    if rank == 0:
        return order_seed
    return random.Random(f"pet-lightning dropout {order_seed} rank {rank}").getrandbits(32)


def dropout_rng_state() -> dict[str, torch.Tensor]:
    """Torch's CPU generator state and, when CUDA is in use, the current device's: the streams dropout draws from."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_dropout_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Undo :func:`dropout_rng_state`; the CUDA state is set only where CUDA is in use (a GPU run resumed on CPU
    keeps its CPU stream)."""
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def all_ranks_rng_state() -> dict[str, object]:
    """:func:`dropout_rng_state` of this process plus, under DDP, every rank's (``ranks``), for checkpoints.

    Each rank draws its own dropout stream (:func:`rank_seed`) but only rank 0 writes the checkpoint, so the others'
    states are gathered into it. A collective: every rank must call it, as every rank dumps a checkpoint.
    """
    state: dict[str, object] = dict(dropout_rng_state())
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        ranks: list[object] = [None] * dist.get_world_size()
        dist.all_gather_object(ranks, dropout_rng_state())
        state["ranks"] = ranks
    return state


def restore_rank_rng_state(state: dict[str, object], rank: int, world_size: int) -> None:
    """Restore this rank's stream from :func:`all_ranks_rng_state` (rank 0's when the world size changed)."""
    ranks = state.get("ranks")
    if isinstance(ranks, list) and len(ranks) == world_size:
        restore_dropout_rng_state(ranks[rank])
    else:
        restore_dropout_rng_state({key: value for key, value in state.items() if key != "ranks"})


__all__ = [
    "SEED_MODES",
    "all_ranks_rng_state",
    "restore_rank_rng_state",
    "STUDY_SEEDS",
    "dropout_rng_state",
    "order_seed_of",
    "rank_seed",
    "resolve_seeds",
    "restore_dropout_rng_state",
    "seed_training_randomness",
]
