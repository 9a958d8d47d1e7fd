"""Each per-step runner trains a tiny random-init model, interleaved with ours, on the same batches."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace

import pytest

from benchmarks.common import Settings, Workload
from benchmarks.interleave import run_ab
from benchmarks.intervals import pair_ratios


@pytest.fixture(scope="module")
def tiny_ab(tiny_backbone) -> tuple[Settings, Workload]:
    settings = Settings(backbone=tiny_backbone, batch_size=4, max_length=32, ab_builds=1, ab_blocks=2,
                        ab_block_steps=2)
    return settings, Workload(settings)


def test_every_side_steps_lora_in_blocks_and_trains_the_same_tensors(tiny_ab):
    # bf16-mixed: every side under autocast (the quick-path test runs both precisions).
    settings, work = tiny_ab
    result = run_ab(settings, work, "lora", "bf16-mixed")
    assert set(result.step_s) == {"ours", "plain", "trainer"}
    assert all(len(times) == 2 and min(times) > 0 for times in result.step_s.values())
    for other in ("plain", "trainer"):
        interval = result.ratios[other]
        assert interval.n == 2 and math.isfinite(interval.low) and interval.low <= interval.mean <= interval.high
    # The three loops train the same LoRA tensors and head: same count, same optimizer state.
    assert len(set(result.trainable.values())) == 1
    assert len(set(result.optimizer_bytes.values())) == 1 and result.optimizer_bytes["ours"] > 0
    assert result.threads == {side: [settings.threads] for side in ("ours", "plain", "trainer")}


def test_full_fine_tuning_against_the_plain_loop_only(tiny_ab):
    settings, work = tiny_ab
    result = run_ab(settings, work, "full", "32-true", others=("plain",))
    assert set(result.ratios) == {"plain"} and set(result.step_s) == {"ours", "plain"}
    assert result.trainable["ours"] == result.trainable["plain"]


def test_builds_are_made_afresh_and_the_interval_is_over_their_means(tiny_ab):
    settings, work = tiny_ab
    three = replace(settings, ab_builds=3, ab_blocks=2, ab_block_steps=1)
    result = run_ab(three, work, "bitfit", "32-true", others=("plain",))
    assert len(result.builds) == 3 and all(len(b["ours"]) == len(b["plain"]) == 2 for b in result.builds)
    per_build = [pair_ratios(b["ours"], b["plain"]) for b in result.builds]
    means = [sum(r) / 2 for r in per_build]
    interval = result.ratios["plain"]
    # Hand computation: mean of the build means, t(0.975, 2) * sd / sqrt(3).
    sd = statistics.stdev(means)
    assert interval.n == 3 and interval.mean == pytest.approx(sum(means) / 3)
    assert interval.high - interval.mean == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-5)
    assert result.step_s["ours"] == [t for b in result.builds for t in b["ours"]]
