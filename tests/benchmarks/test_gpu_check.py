"""The prepared GPU check: without CUDA it says so in one line and exits 0 (what CI runs); its checks fit the
8 minutes it promises; its log readers judge what the commands print."""

from __future__ import annotations

import os
import subprocess

from benchmarks import gpu_check
from tests.conftest import REPO_ROOT


def test_without_cuda_the_check_says_so_in_one_line_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [gpu_check.NO_CUDA]


def test_every_check_together_fits_the_8_minute_promise():
    assert sum(limit for limit, _ in gpu_check.CHECKS.values()) <= 8 * 60
    assert gpu_check.BUDGET_S < 8 * 60


def test_a_fit_passes_only_on_the_gpu_with_a_finite_summary(tmp_path):
    _, judge = gpu_check.command_check("quickstart_bf16", tmp_path, "cuda")
    good = "GPU available: True (cuda), used: True\nSUMMARY task=rte best_val_accuracy=0.6101 epochs=1\n"
    assert judge(good) == (True, "on_gpu=True best_val_accuracy=0.6101")
    assert judge(good.replace("used: True", "used: False"))[0] is False  # trained on the CPU of a GPU machine
    assert judge(good.replace("0.6101", "nan"))[0] is False
    _, stages = gpu_check.command_check("ehft_lora_16mixed", tmp_path, "cuda")
    assert stages("[pet_lightning] stage 2 from epoch 1 (step 16)\nSUMMARY best_val_accuracy=0.55\n")[0] is True
    assert stages("SUMMARY best_val_accuracy=0.55\n") == (False, "NO stage switch best_val_accuracy=0.55")


def test_ab_turns_synchronise_the_device_where_the_clock_is_read_only():
    """One sync at the start of a turn's timed part and one at its end, not one per step: on CUDA the loops then
    run asynchronously within a turn, as they do for users (throughput, not per-step latency)."""
    from benchmarks.interleave import Turns

    baton = type("Baton", (), {"hand_to": lambda self, name: None, "wait_for": lambda self, name: None})()
    syncs: list[int] = []
    turns = Turns("ours", baton, sync=lambda: syncs.append(turns.left))
    turns.starts.append(0.0)
    turns.begin(5, untimed=1)
    for _ in range(6):
        turns.step_done()
    assert syncs == [5, 0]  # after the untimed step (5 timed ones left) and after the last
    assert len(turns.ends) == 1 and turns.per_step()[0] > 0
