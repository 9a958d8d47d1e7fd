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
            time.sleep(0.001 * (2 if self.name == "b" else 1))
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
    # b sleeps twice as long per step: every one of its blocks is slower than a's.
    assert all(b > a for a, b in zip(per_step["a"], per_step["b"]))
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


def test_the_precision_rule_stops_after_a_whole_rotation_and_the_rest_never_runs():
    log: list = []
    running: list = []
    seen: list[int] = []
    warmup, most, k = 1, 10, 1
    sides = {name: FakeSide(name, warmup + most * k, log, running) for name in ("a", "b")}

    def enough(times: dict[str, list[float]]) -> bool:
        assert len(times["a"]) == len(times["b"])
        seen.append(len(times["a"]))
        return len(times["a"]) >= 5

    per_step = Interleaver(sides).run(warmup, most, k, enough, min_blocks=4)  # type: ignore[arg-type]
    # Asked only after whole rotations (2 sides: every 2 blocks) from block 4 on; 6 is the first count >= 5.
    assert seen == [4, 6]
    assert [len(per_step[name]) for name in ("a", "b")] == [6, 6]
    assert max(step for _, step in log) == warmup + 6 * k - 1  # the stopped loops ran no further batch
    time.sleep(0.05)
    assert threading.active_count() < 5


def test_without_the_rule_every_block_runs():
    sides = {name: FakeSide(name, 1 + 4, [], []) for name in ("a", "b")}
    per_step = Interleaver(sides).run(1, 4, 1, None, min_blocks=2)  # type: ignore[arg-type]
    assert [len(per_step[name]) for name in ("a", "b")] == [4, 4]


def test_schedule_offset_continues_the_rotation():
    sides = ["ours", "plain", "trainer"]
    assert schedule(sides, 2, offset=3) == schedule(sides, 2)
    assert schedule(sides, 2, offset=1) == [(0, s) for s in ["plain", "trainer", "ours"]] + [
        (1, s) for s in ["trainer", "ours", "plain"]]


def _fake_builds(monkeypatch, ratios_per_build: list[float]) -> list[int]:
    """Replace the timing of one build by blocks whose ratio plain/ours is the given one; record the offsets."""
    from benchmarks import interleave

    offsets: list[int] = []

    def fake(settings, work, method, precision, others, enough, offset):
        ratio = ratios_per_build[len(offsets)]
        offsets.append(offset)
        step_s = {"ours": [1.0] * settings.ab_blocks, "plain": [ratio] * settings.ab_blocks}
        return interleave._Build(step_s, {"ours": [2], "plain": [2]}, {"ours": 5, "plain": 5}, {}, {})

    monkeypatch.setattr(interleave, "_time_build", fake)
    return offsets


def test_the_build_rule_stops_from_min_builds_once_the_interval_over_builds_is_narrow(monkeypatch):
    from benchmarks.common import Settings
    from benchmarks.interleave import run_ab

    offsets = _fake_builds(monkeypatch, [1.0, 1.01, 1.0, 1.01, 1.0, 1.01])
    settings = Settings(ab_builds=6, ab_min_builds=3, ab_blocks=3, ab_half_width=0.03)
    result = run_ab(settings, None, "full", "32-true", others=("plain",))  # type: ignore[arg-type]
    # Builds 1.0, 1.01, 1.0: mean 1.0033, half width t(2) * 0.00577 / sqrt(3) = 1.4% <= 3%: stop at 3. Each
    # build starts its rotation one block further than the previous one (a new side first).
    assert offsets == [0, 1, 2] and len(result.builds) == 3 and result.ratios["plain"].n == 3
    assert result.block_ratios["plain"].n == 9


def test_wide_build_means_run_every_build(monkeypatch):
    from benchmarks.common import Settings
    from benchmarks.interleave import run_ab

    offsets = _fake_builds(monkeypatch, [1.0, 1.2, 0.9, 1.1])
    settings = Settings(ab_builds=4, ab_min_builds=2, ab_blocks=2, ab_half_width=0.03)
    result = run_ab(settings, None, "full", "32-true", others=("plain",))  # type: ignore[arg-type]
    assert offsets == [0, 1, 2, 3] and result.ratios["plain"].n == 4
    assert result.ratios["plain"].mean == pytest.approx(1.05)


def test_settling_blocks_run_in_the_rotation_but_are_left_out():
    log: list = []
    warmup, settle, blocks = 1, 2, 2
    sides = {name: FakeSide(name, warmup + settle + blocks, log, []) for name in ("a", "b")}
    per_step = Interleaver(sides).run(warmup, blocks, 1, settle=settle)  # type: ignore[arg-type]
    # Warm-up a b; settling blocks a b, b a; timed blocks a b, b a: only the last two blocks are figures.
    assert [name for name, _ in log] == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert [len(per_step[name]) for name in ("a", "b")] == [2, 2]


def test_the_precision_rule_counts_timed_blocks_only():
    seen: list[int] = []
    sides = {name: FakeSide(name, 1 + 2 + 10, [], []) for name in ("a", "b")}

    def enough(times: dict[str, list[float]]) -> bool:
        seen.append(len(times["a"]))
        return True

    per_step = Interleaver(sides).run(1, 10, 1, enough, min_blocks=2, settle=2)  # type: ignore[arg-type]
    assert seen == [2] and [len(per_step[n]) for n in ("a", "b")] == [2, 2]
