"""Interleaved A/B per-step timing: the compared loops take turns in short blocks on the same batches.

Timing each loop in its own run, minutes apart, lets the load of a shared machine drift between them by more than
the differences the ratios judge. Here all loops are alive at once and alternate:

    warm-up: ours, plain, trainer (``WARMUP_STEPS`` each, not timed)
    block 0: ours, plain, trainer (``RESUME_STEPS`` untimed, then ``block_steps`` timed steps each, on the same
             batches)
    block 1: plain, trainer, ours (the next batches; the order rotates every block)
    ...

**How the loops alternate.** Each side runs its *own, unmodified* training loop (Lightning's ``Trainer.fit``,
Hugging Face's ``Trainer.train``, the hand-written loop) in a thread of its own, over one fixed order of batches,
with a learning-rate schedule over that many steps. A baton passed between the threads lets exactly one of them
run at any time: after its block's last step (in Lightning's ``on_train_batch_end``, Trainer's ``on_step_end``, or
after the plain loop's ``zero_grad``) a side hands the baton back and waits; the next side resumes where it
stopped. Nothing runs concurrently, so no side slows another, and no loop is restarted between blocks. Driving
``PETModule.training_step`` from a loop of our own instead would time our module but not Lightning's loop, the
overhead the comparison is about.

**What each time includes.** A block's time runs from the end of its untimed resume steps to the end of its last
optimizer step (device synchronised there only), divided by ``block_steps``. Each side resumes inside the hook of
its previous block's last step, so a block holds, per step, everything its loop does between two optimizer steps:
the rest of the previous step's bookkeeping, fetching and collating the batch, moving it to the device, forward,
loss, backward, optimizer and scheduler step, ``zero_grad``, and the loop's hooks. Loop setup falls in the untimed
warm-up. Dropout draws from the process's global generator, so the sides' masks differ from a run alone; the work
per step does not.

**Resume steps, settling blocks, builds.** The first step after a pause pays for the caches and allocator state
the other loops left behind, a cost no user's loop pays: each block starts with ``RESUME_STEPS`` untimed steps.
The first blocks after the sides are built are the noisy ones: ``SETTLE_BLOCKS`` blocks run in the rotation but
are not kept. Whatever one build of the sides fixes for its lifetime (where its tensors landed, its threads'
OpenMP teams) shifts all its blocks alike, so :func:`run_ab` builds the sides afresh ``ab_builds`` times per cell
and reports the mean of the builds' mean ratios with its 95% interval over builds
(:func:`benchmarks.intervals.over_builds`); with one build, the interval over its block pairs. The measurements
behind these rules are in ``docs/performance.md``.

**Ratios.** Pair ``i`` is ours' block ``i`` and the other side's block ``i``: the same batches, seconds apart.
Its ratio is the other side's time per step over ours (speed of ours relative to it; > 1: ours is faster).
"""

from __future__ import annotations

import functools
import gc
import math
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import Settings, Workload
from benchmarks.intervals import RatioInterval, over_builds, pair_ratios
from benchmarks.runners import Side, build_side
from benchmarks.timing import sync

MAIN = "main"
WARMUP_STEPS = 1
"""Untimed steps per side before the first block of a build (loop setup, first allocations)."""
RESUME_STEPS = 1
"""Untimed steps that start every block: the first step after a pause pays for the other loops' cache state."""
SETTLE_BLOCKS = 2
"""Blocks per build run in the rotation but not kept: the first blocks after a build are the noisy ones."""


class Aborted(Exception):
    """Raised inside a side's thread when the interleaving stops early (another side failed)."""


def schedule(sides: list[str], blocks: int, offset: int = 0) -> list[tuple[int, str]]:
    """The order of the timed blocks: ``(block, side)`` for block 0, 1, ..., each side once per block.

    The side order rotates by one each block (two sides: A B, B A, A B, ...), so that no side always follows the
    same other one (caches, allocator state) and a drift of the machine's speed within a pair of blocks cancels over
    two blocks instead of always favouring the side that goes first. ``offset`` starts the rotation that many blocks
    on (build ``b`` of a cell uses ``b``, so successive builds start with each side in turn).
    """
    n = len(sides)
    return [(block, side) for block in range(blocks)
            for side in sides[(block + offset) % n:] + sides[: (block + offset) % n]]


class Baton:
    """Exactly one holder at a time: the main thread or one side. Handing it over wakes the new holder; after
    :meth:`abort` every side that waits, or waits later, raises :class:`Aborted` (the main thread never waits)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holder = MAIN
        self._aborted = False

    def hand_to(self, name: str) -> None:
        with self._cond:
            self._holder = name
            self._cond.notify_all()

    def wait_for(self, name: str) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._holder == name or (self._aborted and name != MAIN))
            if self._aborted and name != MAIN:
                raise Aborted(name)

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()


@dataclass
class Turns:
    """One side's clock: steps left in its current turn, and the start and end time of every turn."""

    name: str
    baton: Baton
    left: float = 0
    untimed_left: int = 0
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    # Waits for the device's queued work; called only where the clock is read (the timed part's start and the
    # turn's end), so on CUDA the loops run asynchronously within a turn as they do for users (a sync every step
    # would time latency, not throughput, and under-state whichever loop hides more host work behind the GPU).
    sync: Callable[[], None] = lambda: None

    def begin(self, steps: float, untimed: int = 0) -> None:
        """A turn of ``untimed`` steps whose time is not kept, then ``steps`` timed ones."""
        self.left, self.untimed_left = steps + untimed, untimed
        self.steps.append(int(steps) if math.isfinite(steps) else 0)

    def step_done(self) -> None:
        """Called by the side after every optimizer step: at the end of a turn, pause until the next one."""
        self.left -= 1
        if self.untimed_left > 0:
            self.untimed_left -= 1
            if self.untimed_left == 0:
                self.sync()
                self.starts[-1] = time.perf_counter()  # the timed part of the turn begins now
        if self.left > 0:
            return
        self.sync()
        self.ends.append(time.perf_counter())
        self.threads.add(_torch_threads())
        self.baton.hand_to(MAIN)
        self.baton.wait_for(self.name)
        self.starts.append(time.perf_counter())

    def per_step(self) -> list[float]:
        """Seconds per step of every completed turn."""
        return [(end - start) / steps for start, end, steps in zip(self.starts, self.ends, self.steps)]


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


class Interleaver:
    """Runs sides in alternating turns, one at a time (see the module docstring)."""

    def __init__(self, sides: dict[str, Side], accelerator: str = "cpu"):
        self.sides = sides
        self.baton = Baton()
        self.turns = {name: Turns(name, self.baton, sync=functools.partial(sync, accelerator)) for name in sides}
        self.errors: dict[str, BaseException] = {}
        self.threads = {name: threading.Thread(target=self._thread, args=(name,), daemon=True) for name in sides}
        self.finished: set[str] = set()

    def _thread(self, name: str) -> None:
        import torch

        torch.set_num_threads(self.sides[name].settings.threads)
        try:
            self.baton.wait_for(name)
            self.turns[name].starts.append(time.perf_counter())
            self.sides[name].run(self.turns[name].step_done)
        except Aborted:
            pass
        except BaseException as err:  # reported by the main thread
            self.errors[name] = err
        finally:
            self.finished.add(name)
            self.baton.hand_to(MAIN)

    def turn(self, name: str, steps: float, untimed: int = 0) -> None:
        """Let ``name`` run ``untimed`` + ``steps`` steps (``inf``: to the end of its loop), and wait until it hands
        back."""
        self.turns[name].begin(steps, untimed)
        if not self.threads[name].is_alive() and name not in self.finished:
            self.threads[name].start()
        self.baton.hand_to(name)
        self.baton.wait_for(MAIN)
        if self.errors:
            self.abort()
            failed, err = next(iter(self.errors.items()))
            raise RuntimeError(f"interleaved timing: side {failed!r} failed: {err}") from err
        if name in self.finished and math.isfinite(steps):
            self.abort()
            raise RuntimeError(f"interleaved timing: side {name!r} ran out of batches before its turn ended")

    def run(self, warmup: int, blocks: int, block_steps: int, resume_steps: int = 0, offset: int = 0,
            settle: int = 0) -> dict[str, list[float]]:
        """Warm-up turns, then the blocks in :func:`schedule` order, then each loop runs to its end; returns each
        side's seconds per step, one figure per kept block. Each block starts with ``resume_steps`` untimed steps;
        ``offset`` starts the side order's rotation that many blocks on (:func:`schedule`). The first ``settle``
        blocks run like the others, in the rotation, but are left out of the figures.
        """
        names = list(self.sides)
        for name in names:
            self.turn(name, warmup)
        for _, name in schedule(names, settle + blocks, offset):
            self.turn(name, block_steps, resume_steps)
        for name in names:
            self.turn(name, math.inf)
            self.threads[name].join()
        return self._times(settle, blocks)

    def _times(self, settle: int, blocks: int) -> dict[str, list[float]]:
        # Turn 0 is the warm-up, turns 1 .. settle the settling blocks; the finishing turn has no end.
        return {name: turns.per_step()[1 + settle : 1 + settle + blocks] for name, turns in self.turns.items()}

    def abort(self) -> None:
        self.baton.abort()
        for thread in self.threads.values():
            if thread.is_alive():
                thread.join(timeout=60)


@dataclass
class ABResult:
    """One method in one precision: seconds per step of every kept block of every build, and each comparison's
    ratio interval (over build means when the cell ran two builds or more: :func:`benchmarks.intervals.over_builds`).
    """

    method: str
    precision: str
    builds: list[dict[str, list[float]]]
    ratios: dict[str, RatioInterval]
    trainable: dict[str, int | None]
    optimizer_bytes: dict[str, int | None]
    build_s: dict[str, float]
    threads: dict[str, list[int]] = field(default_factory=dict)

    @property
    def step_s(self) -> dict[str, list[float]]:
        """Every block's seconds per step, builds in order."""
        return {name: [t for build in self.builds for t in build[name]] for name in self.builds[0]}

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "precision": self.precision, "step_s": self.step_s, "builds": self.builds,
            "ratios": {k: v.as_dict() for k, v in self.ratios.items()},
            "trainable": self.trainable, "optimizer_bytes": self.optimizer_bytes, "build_s": self.build_s,
            "threads": self.threads,
        }


@dataclass
class Build:
    """One fresh build of the sides, timed: seconds per kept block and what each side is."""

    step_s: dict[str, list[float]]
    threads: dict[str, list[int]]
    trainable: dict[str, int | None]
    optimizer_bytes: dict[str, int | None]
    build_s: dict[str, float]


def time_build(settings: Settings, work: Workload, method: str, precision: str, names: list[str],
               offset: int) -> Build:
    """Build the sides afresh (models, optimizers, loop threads), time them in interleaved blocks, free them."""
    blocks = SETTLE_BLOCKS + settings.ab_blocks
    total = WARMUP_STEPS + blocks * (RESUME_STEPS + settings.ab_block_steps)
    sides: dict[str, Side] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for name in names:
                sides[name] = build_side(name, settings, work, method, precision, total)
            interleaver = Interleaver(sides, settings.accelerator)
            step_s = interleaver.run(WARMUP_STEPS, settings.ab_blocks, settings.ab_block_steps, RESUME_STEPS, offset,
                                     SETTLE_BLOCKS)
            threads = {name: sorted(turns.threads) for name, turns in interleaver.turns.items()}
            return Build(step_s, threads, {n: s.trainable for n, s in sides.items()},
                         {n: s.optimizer_bytes for n, s in sides.items()}, {n: s.build_s for n, s in sides.items()})
        finally:
            for side in sides.values():
                side.close()
            sides.clear()
            gc.collect()


def run_ab(
    settings: Settings, work: Workload, method: str, precision: str, others: tuple[str, ...] = ("plain", "trainer")
) -> ABResult:
    """Time ``ours`` against each of ``others`` in interleaved blocks, for one method in one precision.

    Every one of ``settings.ab_builds`` builds is made afresh and runs ``SETTLE_BLOCKS`` untimed then
    ``ab_blocks`` kept blocks, build ``b`` starting the side order's rotation ``b`` blocks on (so that successive
    builds start with each side in turn). The interval is over the builds' mean ratios (builds, not blocks, are the
    independent draws); with one build, over its block pairs.
    """
    names = ["ours", *others]
    builds = [time_build(settings, work, method, precision, names, offset=b) for b in range(settings.ab_builds)]
    ratios = {o: over_builds([pair_ratios(b.step_s["ours"], b.step_s[o]) for b in builds]) for o in others}
    threads = {n: sorted({t for b in builds for t in b.threads[n]}) for n in names}
    first = builds[0]
    return ABResult(method, precision, [b.step_s for b in builds], ratios, first.trainable, first.optimizer_bytes,
                    first.build_s, threads=threads)
