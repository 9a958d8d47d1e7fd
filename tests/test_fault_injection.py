"""Crash anywhere, lose nothing: real fits killed at random steps resume to exactly the uninterrupted result.

Each fit is a real ``cli.py fit`` process (forked by :mod:`tests.fault_runner` to skip Python's start-up; the
preemption test also runs ``python cli.py`` itself) on a tiny random BERT with dropout on, 12 steps in 2 epochs,
keeping a step checkpoint every step. A chain kills the run with SIGKILL at 5 seeded random steps; each time it is
resumed with ``--ckpt_path`` from the newest checkpoint on disk. Every checkpoint a resumed segment writes (model,
optimizer, schedule, dropout stream) must equal the uninterrupted run's of the same step, tensor for tensor.
The faults come from :mod:`tests.helpers.faults`, which every fit process here loads as a Lightning external
callback. Run with ``pytest -s`` to see the kill steps and the summary lines.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pet_lightning.checkpoint_io import load_checkpoint_file
from tests.conftest import REPO_ROOT
from tests.helpers.faults import Faults, plugin_env
from tests.helpers.resume import differences

SEED = 18
STEPS = 12  # 24 examples in batches of 4, 2 epochs
KILLS = 5
RUN_TIMEOUT_S = 600
METHODS: dict[str, dict[str, Any]] = {
    "full": {"strategy": "full"},
    "lora": {"strategy": {"name": "lora", "r": 4, "dropout": 0.1}, "group_by_length": True},
    "random": {"strategy": "random"},
    "two_stage": {"strategy": {"name": "lora", "r": 4}, "two_stage": True},
}


class Runner:
    """The fork server of tests.fault_runner: ``run(args, env, log)`` runs one ``cli.py`` process."""

    def __init__(self) -> None:
        env = plugin_env({**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"})
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fault_runner"], cwd=REPO_ROOT, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.process.stdout.readline())["ready"]

    def run(self, args: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
        self.process.stdin.write(json.dumps({"args": args, "env": env, "log": str(log)}) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], RUN_TIMEOUT_S)
        if not ready:
            self.process.kill()
            pytest.fail(f"a fit took over {RUN_TIMEOUT_S} s: {_tail(log)}")
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def runner():
    server = Runner()
    yield server
    server.close()


@pytest.fixture(scope="module")
def references(runner, tiny, data_dir, tmp_path_factory) -> dict[str, Path]:
    """The uninterrupted run of every method: its step checkpoints, by method."""
    root = tmp_path_factory.mktemp("reference")
    folders = {}
    for method in METHODS:
        folder = root / method
        config = write_config(folder / "config.yaml", tiny, data_dir, method, folder / "steps")
        answer = runner.run(fit_args(config, folder), {}, folder / "log.txt")
        assert answer["returncode"] == 0, _tail(folder / "log.txt")
        assert len(step_files(folder / "steps")) == STEPS
        folders[method] = folder / "steps"
    return folders


def write_config(path: Path, backbone: str, data_dir: str, method: str, steps_dir: Path) -> Path:
    settings = METHODS[method]
    callbacks: list[dict[str, Any]] = []
    if settings.get("two_stage"):
        callbacks.append({"class_path": "pet_lightning.callbacks.TwoStageTraining",
                          "init_args": {"stage1_epochs": 1, "learning_rate": 1e-3, "warmup_ratio": 0.2}})
    callbacks.append({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                      "init_args": {"dirpath": str(steps_dir), "filename": "{step}", "every_n_train_steps": 1,
                                    "save_top_k": -1}})
    config = {
        "seed_everything": 7,
        "trainer": {"accelerator": "cpu", "devices": 1, "precision": "32-true", "max_epochs": 2, "logger": False,
                    "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
                    "limit_val_batches": 1, "callbacks": callbacks},
        "model": {"backbone": backbone, "strategy": settings["strategy"], "learning_rate": 1e-3, "init_seed": 0,
                  "hidden_dropout": 0.1, "warmup_ratio": 0.2},
        "data": {"class_path": "pet_lightning.data.GlueDataModule",
                 "init_args": {"task": "rte", "data_dir": data_dir, "max_length": 32, "batch_size": 4,
                               "train_subset": 24, "order_seed": 3,
                               "group_by_length": bool(settings.get("group_by_length"))}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def fit_args(config: Path, root: Path, ckpt_path: Path | None = None) -> list[str]:
    args = ["fit", "--config", str(config), f"--trainer.default_root_dir={root}"]
    return args + ([f"--ckpt_path={ckpt_path}"] if ckpt_path else [])


def step_files(folder: Path) -> dict[int, Path]:
    return {int(re.search(r"step=(\d+)", p.name).group(1)): p for p in folder.glob("step=*.ckpt")}


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


# What "all tensors equal" covers: the model, the optimizer, the schedule, the dropout stream, the step.
COMPARED = ("state_dict", "optimizer_states", "lr_schedulers", "pet_lightning", "global_step", "epoch")


def checkpoint_differences(path: Path, reference: Path) -> list[str]:
    got, expected = load_checkpoint_file(path), load_checkpoint_file(reference)
    return [d for key in COMPARED for d in differences(got.get(key), expected.get(key), key)]


def kill_steps(method: str) -> list[int]:
    """5 distinct steps in 2..11, seeded; a two-stage chain gets kills in both stages (stage 2 starts at step 7)."""
    rng = random.Random(f"{SEED}-{method}")
    while True:
        steps = sorted(rng.sample(range(2, STEPS), KILLS))
        if not METHODS[method].get("two_stage") or (min(steps) <= 6 < max(steps)):
            return steps


def run_chain(runner: Runner, tiny: str, data_dir: str, method: str, reference: Path, root: Path,
              fault: str = "kill_at_step") -> dict[str, int]:
    """Kill a fit at each of ``kill_steps(method)`` and resume it each time; returns the summary counts."""
    kills = kill_steps(method)
    print(f"\n[fault-injection] {method}: {fault} at steps {kills} (seed {SEED})")
    latest: Path | None = None
    lost, equal = 0, 0
    for index, step in enumerate([*kills, None]):
        segment = root / f"segment{index}"
        config = write_config(segment / "config.yaml", tiny, data_dir, method, segment / "steps")
        env = Faults(**{fault: step}).env() if step is not None else {}
        answer = runner.run(fit_args(config, root, latest), env, segment / "log.txt")
        if step is not None:
            assert answer["signal"] == 9, f"not killed at step {step}: {answer}\n{_tail(segment / 'log.txt')}"
        else:
            assert answer["returncode"] == 0, _tail(segment / "log.txt")
        written = step_files(segment / "steps")
        if index > 0:  # a resumed segment: everything it wrote equals the uninterrupted run
            mismatched = {s: checkpoint_differences(p, reference / p.name) for s, p in written.items()}
            mismatched = {s: d for s, d in mismatched.items() if d}
            assert not mismatched, f"{method}: resumed from {latest.name} differs: {mismatched}"
            equal += 1
        everything = {s: p for seg in sorted(root.glob("segment*")) for s, p in step_files(seg / "steps").items()}
        newest = max(everything)
        load_checkpoint_file(everything[newest])  # the newest file on disk is whole
        if step is not None and newest != step - 1:
            lost += 1  # more than the step in flight would be lost
        latest = everything[newest]
    assert max(everything) == STEPS and not checkpoint_differences(everything[STEPS], reference / f"step={STEPS}.ckpt")
    summary = {"trials": len(kills), "lost": lost, "resumed": len(kills), "resumed_equal": equal}
    print(f"[fault-injection] {method}: {json.dumps(summary)}")
    return summary


@pytest.mark.parametrize("method", list(METHODS))
def test_sigkill_at_five_random_steps_resumes_to_the_uninterrupted_weights(method, runner, tiny, data_dir,
                                                                          references, tmp_path):
    summary = run_chain(runner, tiny, data_dir, method, references[method], tmp_path)
    assert summary == {"trials": KILLS, "lost": 0, "resumed": KILLS, "resumed_equal": KILLS}


def test_sigkill_in_the_middle_of_checkpoint_writes_loses_nothing(runner, tiny, data_dir, references, tmp_path):
    """The kill lands half-way through writing a step's checkpoint: the file is absent, never partial."""
    summary = run_chain(runner, tiny, data_dir, "full", references["full"], tmp_path, fault="kill_in_write")
    assert summary == {"trials": KILLS, "lost": 0, "resumed": KILLS, "resumed_equal": KILLS}
    partial = [p for p in tmp_path.rglob(".step=*.tmp-write")]
    assert len(partial) == KILLS  # each kill left its half-written temporary file, never a .ckpt


def _preempted_run(command, tiny: str, data_dir: str, root: Path, signal_name: str, step: int) -> dict[str, Any]:
    """Preempt a full-FT fit with ``signal_name`` at ``step``, then start the very same command again."""
    config = write_config(root / "config.yaml", tiny, data_dir, "full", root / "steps")
    args = fit_args(config, root)
    first = command(args, Faults(**{f"{signal_name.lower()}_at_step": step}).env(), root / "first.txt")
    ended = time.time()
    log = (root / "first.txt").read_text(errors="replace")
    assert first["returncode"] == 0 and first["signal"] is None, log[-3000:]  # a clean exit
    sent = float(re.search(rf"fault injection: {signal_name} at step {step} time=([\d.]+)", log).group(1))
    assert f"preempted at step {step}: saved" in log, log[-3000:]
    (pointer,) = root.glob("resume/*/latest.json")
    preempted = Path(json.loads(pointer.read_text())["path"])
    assert preempted.name == "preempted.ckpt" and load_checkpoint_file(preempted)["global_step"] == step
    assert max(step_files(root / "steps")) == step  # the run stopped at the batch the signal arrived in

    second = command(args, {}, root / "second.txt")
    log2 = (root / "second.txt").read_text(errors="replace")
    assert second["returncode"] == 0, log2[-3000:]
    resumed_lines = [line for line in log2.splitlines() if "[pet_lightning] auto-resume" in line]
    assert len(resumed_lines) == 1 and str(preempted) in resumed_lines[0], log2[-3000:]
    assert not pointer.exists() and not preempted.exists()  # finished: running the command again starts over
    print(f"[fault-injection] {signal_name} at step {step}: exit {first['returncode']} "
          f"{ended - sent:.1f} s after the signal; resumed: {resumed_lines[0]}")
    return {"exit_s": ended - sent}


def test_sigterm_saves_exits_and_the_same_python_cli_command_resumes_exactly(tiny, data_dir, references, tmp_path):
    """Real ``python cli.py fit`` processes: SIGTERM at step 5, then the same command without any flag."""
    def command(args: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
        full_env = plugin_env({**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", **env})
        with open(log, "w") as handle:
            result = subprocess.run([sys.executable, "cli.py", *args], cwd=REPO_ROOT, env=full_env, stdout=handle,
                                    stderr=subprocess.STDOUT, timeout=600)
        return {"returncode": result.returncode, "signal": -result.returncode if result.returncode < 0 else None}

    timing = _preempted_run(command, tiny, data_dir, tmp_path, "SIGTERM", 5)
    assert timing["exit_s"] < 15  # includes the interpreter's own shutdown
    final = step_files(tmp_path / "steps")
    assert sorted(final) == list(range(1, STEPS + 1))
    for step, path in final.items():
        assert not checkpoint_differences(path, references["full"] / path.name), step


def test_sigusr1_outside_slurm_saves_exits_and_auto_resumes_exactly(runner, tiny, data_dir, references, tmp_path):
    timing = _preempted_run(runner.run, tiny, data_dir, tmp_path, "SIGUSR1", 8)
    assert timing["exit_s"] < 10
    final = step_files(tmp_path / "steps")
    assert sorted(final) == list(range(1, STEPS + 1))
    assert not checkpoint_differences(final[STEPS], references["full"] / f"step={STEPS}.ckpt")
