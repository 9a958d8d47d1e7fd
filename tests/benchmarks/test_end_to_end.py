"""One complete run per side (tiny random-init model, CB): every time bucket, checkpoint bytes, the report metric."""

from __future__ import annotations

import pytest

from benchmarks.common import Settings
from benchmarks.end_to_end import run_ours, run_trainer, side_order


@pytest.mark.parametrize("runner", [run_ours, run_trainer])
def test_a_complete_run_reports_where_its_time_went(runner, tiny_backbone, tmp_path):
    settings = Settings(backbone=tiny_backbone, batch_size=8, e2e_precision="32-true", e2e_epochs=2,
                        e2e_patience=1, e2e_train_subset=16, e2e_max_length=32)
    times = runner(settings, "cb", "bitfit", 0, tmp_path)
    parts = times.setup_s + times.train_s + times.eval_s + times.ckpt_s + times.final_s
    assert times.wall_s == pytest.approx(parts)
    assert min(times.setup_s, times.train_s, times.eval_s, times.ckpt_s, times.final_s) > 0
    assert times.ckpt_files >= 1 and times.ckpt_bytes > 0
    assert 1 <= times.epochs <= 2 and times.steps == 2 * times.epochs  # 16 examples, batch 8
    assert 0 <= times.report_headline <= 1


def test_repeats_alternate_which_side_runs_first():
    assert [side_order(r) for r in range(3)] == [("ours", "trainer"), ("trainer", "ours"), ("ours", "trainer")]


def test_per_epoch_ratio_and_ceiling_are_computed_from_the_runs():
    from benchmarks.end_to_end import E2EResult, RunTimes
    from benchmarks.intervals import pair_ratios, ratio_interval

    ours = [RunTimes("ours", "cb", "bitfit", r, wall_s=w, train_s=t, epochs=e)
            for r, (w, t, e) in enumerate([(20.0, 18.0, 10), (12.0, 10.0, 5)])]
    theirs = [RunTimes("trainer", "cb", "bitfit", r, wall_s=w, train_s=t, epochs=e)
              for r, (w, t, e) in enumerate([(11.0, 10.0, 5), (24.0, 20.0, 10)])]
    per_epoch = pair_ratios([o.wall_s / o.epochs for o in ours], [t.wall_s / t.epochs for t in theirs])
    assert per_epoch == pytest.approx([(11 / 5) / (20 / 10), (24 / 10) / (12 / 5)])
    result = E2EResult("cb", "bitfit", {"ours": ours, "trainer": theirs},
                       ratio_interval(pair_ratios([20.0, 12.0], [11.0, 24.0])), ratio_interval(per_epoch))
    # Time to result swings with the epochs early stopping kept (0.55x, then 2x); per epoch it is 1.1x and 1.0x.
    assert result.ratio.mean == pytest.approx((11 / 20 + 24 / 12) / 2)
    assert result.per_epoch.mean == pytest.approx((1.1 + 1.0) / 2)
    assert result.ceiling() == pytest.approx((11 / 10 + 24 / 20) / 2)
    assert result.as_dict()["ceiling"] == pytest.approx(1.15)
