"""The interleaver runs one side at a time, in A, B, A, B order, and reports a failing side instead of hanging."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from benchmarks.interleave import Interleaver, schedule


class FakeSide:
    """A loop of ``total`` steps that logs (side, step) and checks nothing else runs meanwhile."""

    def __init__(self, name: str, total: int, log: list, running: list, fail_at: int | None = None):
        self.name, self.total, self.log, self.running, self.fail_at = name, total, log, running, fail_at
        self.settings = type("S", (), {"threads": torch.get_num_threads()})()  # leave the process's count as is

    def run(self, step_done) -> None:
        for step in range(self.total):
            self.running.append(self.name)
            assert len(self.running) == 1, f"{self.running} run at once"
            if step == self.fail_at:
                raise ValueError(f"{self.name} broke")
            time.sleep(0.001 * (4 if self.name == "b" else 1))
            self.log.append((self.name, step))
            self.running.pop()
            step_done()


def test_schedule_alternates_sides_block_by_block():
    assert schedule(["a", "b"], 3) == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]
    assert [side for _, side in schedule(["ours", "plain", "trainer"], 3)] == [
        "ours", "plain", "trainer", "plain", "trainer", "ours", "trainer", "ours", "plain"]


def test_sides_take_turns_on_the_same_steps_one_at_a_time():
    log: list = []
    running: list = []
    warmup, blocks, k = 1, 3, 2
    total = warmup + blocks * k
    sides = {name: FakeSide(name, total, log, running) for name in ("a", "b")}
    per_step = Interleaver(sides).run(warmup, blocks, k)  # type: ignore[arg-type]
    # Warm-up a, b; then blocks of k steps: a b, b a, a b (the order rotates), each block on the same step numbers.
    expected = [("a", 0), ("b", 0)]
    for block in range(blocks):
        steps = range(warmup + block * k, warmup + (block + 1) * k)
        order = ("a", "b") if block % 2 == 0 else ("b", "a")
        expected += [(order[0], s) for s in steps] + [(order[1], s) for s in steps]
    assert log == expected
    assert [len(per_step[name]) for name in ("a", "b")] == [blocks, blocks]
    # b sleeps 4 times as long per step: its blocks are slower than a's (on average: a loaded machine may stall one).
    assert sum(per_step["b"]) > sum(per_step["a"])
    assert threading.active_count() < 5  # the side threads ended


def test_a_failing_side_stops_the_run_with_its_error():
    log: list = []
    running: list = []
    sides = {"a": FakeSide("a", 7, log, running), "b": FakeSide("b", 7, log, running, fail_at=3)}
    with pytest.raises(RuntimeError, match="side 'b' failed: b broke"):
        Interleaver(sides).run(1, 3, 2)  # type: ignore[arg-type]


def test_a_side_that_runs_out_of_steps_is_reported():
    sides = {"a": FakeSide("a", 7, [], []), "b": FakeSide("b", 4, [], [])}
    with pytest.raises(RuntimeError, match="'b' ran out of batches"):
        Interleaver(sides).run(1, 3, 2)  # type: ignore[arg-type]


def test_schedule_offset_continues_the_rotation():
    sides = ["ours", "plain", "trainer"]
    assert schedule(sides, 2, offset=3) == schedule(sides, 2)
    assert schedule(sides, 2, offset=1) == [(0, s) for s in ["plain", "trainer", "ours"]] + [
        (1, s) for s in ["trainer", "ours", "plain"]]


def test_settling_blocks_run_in_the_rotation_but_are_left_out():
    log: list = []
    warmup, settle, blocks = 1, 2, 2
    sides = {name: FakeSide(name, warmup + settle + blocks, log, []) for name in ("a", "b")}
    per_step = Interleaver(sides).run(warmup, blocks, 1, settle=settle)  # type: ignore[arg-type]
    # Warm-up a b; settling blocks a b, b a; timed blocks a b, b a: only the last two blocks are figures.
    assert [name for name, _ in log] == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert [len(per_step[name]) for name in ("a", "b")] == [2, 2]


def test_every_build_is_fresh_starts_the_rotation_one_further_and_the_interval_is_over_build_means(monkeypatch):
    from benchmarks import interleave
    from benchmarks.common import Settings

    offsets: list[int] = []
    ratios = [1.0, 1.2, 0.9, 1.1]

    def fake(settings, work, method, precision, names, offset):
        offsets.append(offset)
        step_s = {"ours": [1.0] * settings.ab_blocks, "plain": [ratios[offset]] * settings.ab_blocks}
        return interleave.Build(step_s, {"ours": [2], "plain": [2]}, {"ours": 5, "plain": 5}, {}, {})

    monkeypatch.setattr(interleave, "time_build", fake)
    result = interleave.run_ab(Settings(ab_builds=4, ab_blocks=2), None, "full", "32-true", others=("plain",))
    assert offsets == [0, 1, 2, 3] and len(result.builds) == 4
    assert result.ratios["plain"].n == 4 and result.ratios["plain"].mean == pytest.approx(1.05)
    assert result.threads == {"ours": [2], "plain": [2]}
