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
