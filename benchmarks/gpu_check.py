"""The prepared GPU check: what a CUDA user runs first works, is fast, and stays finite. Under 8 minutes on one GPU.

    bash benchmarks/gpu_check.sh            # or: python -m benchmarks.gpu_check [--out DIR]

Writes every log and figure under ``$OUT`` (or ``--out``, default ``./gpu_check``) and prints one line per check,
``ok <check>: <figure>`` or ``FAIL <check>: <figure>``, then ``gpu_check: <n> ok, <m> FAIL``. The exit code is 1 when a
check failed. On a machine without CUDA it prints one line saying so and exits 0 (CI runs that path).

Checks (each in a process of its own, with its own time limit; the DDP one only with two GPUs or more):

* ``quickstart_bf16``: ``python cli.py fit --config configs/quickstart.yaml`` as the README gives it (few batches):
  it must run on the GPU (``accelerator: auto``) and print a finite SUMMARY;
* ``lora_16mixed``: LoRA in ``16-mixed`` on the fused AdamW path (GradScaler): finite loss, fused optimizer;
* ``ehft_lora_16mixed``: EH-FT LoRA (``configs/eh_ft/eh_ft_lora.yaml``, gradient clipping 0.1, so the unfused
  optimizer and ``unscale_``) in ``16-mixed`` across the stage switch;
* ``adalora_16mixed``: AdaLoRA's importance scores stay finite under ``16-mixed`` with fused AdamW, also after the
  scaler skipped overflowing steps;
* ``syncs``: per-step host-device syncs counted by source line (``torch.cuda.set_sync_debug_mode``) over an LP-FT
  fit with the feature cache, the stage log and CollapseGuard: no pet_lightning line may sync every step;
* ``ray_2x05``: two sweep trials at 0.5 GPU each that overlap in time, both on the GPU, both recorded ok;
* ``ab_cuda``: the A/B per-step ratios of ours against a plain loop (and Hugging Face Trainer + peft when accelerate
  is installed) on CUDA, in bf16-mixed and 16-mixed;
* ``ddp_nccl``: EH-FT BitFit on two GPUs with DDP over NCCL (the re-wrap at the stage switch), one SUMMARY line.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BUDGET_S = 450  # all checks together, under the 8 minutes the script promises (start-up included)
NO_CUDA = "gpu_check: no CUDA device visible (torch.cuda.is_available() is False): nothing to check on this machine"
# check name -> (time limit in seconds, needs two GPUs)
CHECKS: dict[str, tuple[int, bool]] = {
    "quickstart_bf16": (50, False),
    "lora_16mixed": (40, False),
    "ehft_lora_16mixed": (50, False),
    "adalora_16mixed": (40, False),
    "syncs": (40, False),
    "ray_2x05": (100, False),
    "ab_cuda": (70, False),
    "ddp_nccl": (60, True),
}
RESULT = "RESULT"


def _result(ok: bool, figure: str) -> None:
    print(f"{RESULT} {'ok' if ok else 'FAIL'} {figure}", flush=True)


def _quiet() -> dict[str, Any]:
    return dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


def _device(accelerator: str) -> dict[str, Any]:
    return {"accelerator": "gpu" if accelerator == "cuda" else "cpu", "devices": 1}


def _data(accelerator: str, train_subset: int):
    from pet_lightning import GlueDataModule

    if accelerator == "cuda":
        return GlueDataModule(task="rte", batch_size=32, max_length=128, train_subset=train_subset, order_seed=0)
    # --accelerator cpu only exercises the code paths: small batches, short inputs.
    return GlueDataModule(task="rte", batch_size=8, max_length=32, train_subset=64, order_seed=0)


def _fp16(accelerator: str) -> str:
    # Developing this script without a GPU (--accelerator cpu): CPUs have no fp16 loss-scaling path.
    return "16-mixed" if accelerator == "cuda" else "32-true"


# ------------------------------------------------------------------------------------------------- in-process probes
def probe_lora_16mixed(out: Path, accelerator: str) -> None:
    import lightning as L
    import torch

    from pet_lightning import PETModule

    module = PETModule(task="rte", strategy="lora", learning_rate=5e-4, init_seed=0)
    data = _data(accelerator, 512)
    trainer = L.Trainer(precision=_fp16(accelerator), max_epochs=1, limit_val_batches=4, num_sanity_val_steps=0,
                        default_root_dir=out, **_device(accelerator), **_quiet())
    trainer.fit(module, datamodule=data)
    fused = bool(trainer.optimizers[0].defaults.get("fused"))
    loss = float(trainer.callback_metrics.get("val/loss", torch.tensor(math.nan)))
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    scale = scaler.get_scale() if scaler is not None else math.nan
    _result(fused and math.isfinite(loss), f"val/loss={loss:.4f} fused_adamw={fused} final_loss_scale={scale:g} "
            f"steps={trainer.global_step}")


def probe_adalora_16mixed(out: Path, accelerator: str) -> None:
    import lightning as L
    import torch

    from pet_lightning import PETModule
    from pet_lightning.callbacks import AdaLoraSchedule
    from pet_lightning.strategies.peft_methods import adalora_model

    module = PETModule(task="rte", strategy={"name": "adalora", "init_r": 12, "target_r": 4, "tinit": 5,
                                             "tfinal": 5, "delta_t": 2}, learning_rate=1e-3, init_seed=0)
    data = _data(accelerator, 1280)
    trainer = L.Trainer(precision=_fp16(accelerator), max_steps=40, limit_val_batches=0, default_root_dir=out,
                        callbacks=[AdaLoraSchedule()], **_device(accelerator), **_quiet())
    trainer.fit(module, datamodule=data)
    allocator = adalora_model(module.model).rankallocator
    scores = list(allocator.exp_avg_unc.values()) + list(allocator.exp_avg_ipt.values())
    bad = sum(int(not torch.isfinite(t).all()) for t in scores)
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    scale = scaler.get_scale() if scaler is not None else math.nan
    pattern = adalora_model(module.model).peft_config["default"].rank_pattern or {}
    kept = sum(sum(mask) for mask in pattern.values())
    _result(bad == 0 and bool(pattern), f"nonfinite_score_tensors={bad}/{len(scores)} ranks_kept={kept} "
            f"fused_adamw={trainer.optimizers[0].defaults.get('fused')} final_loss_scale={scale:g} "
            "(a scale below 65536 means the scaler skipped steps)")


def probe_syncs(out: Path, accelerator: str) -> None:
    import lightning as L
    import torch

    from pet_lightning import PETModule
    from pet_lightning.callbacks import CollapseGuard, RunSummary, TwoStageTraining

    counted_steps = []

    class DebugOn(L.Callback):  # first callback: from the 4th step on (the first ones build state once)
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step >= 3:
                counted_steps.append(trainer.global_step)
                if accelerator == "cuda":
                    torch.cuda.set_sync_debug_mode("warn")

    class DebugOff(L.Callback):  # last callback: the other callbacks' batch-end hooks are counted too
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if accelerator == "cuda":
                torch.cuda.set_sync_debug_mode(0)

    module = PETModule(task="rte", strategy="frozen", learning_rate=1e-3, init_seed=0)
    data = _data(accelerator, 640)
    precision = "bf16-mixed" if accelerator == "cuda" else "32-true"
    trainer = L.Trainer(precision=precision, max_epochs=3, limit_val_batches=2, num_sanity_val_steps=0,
                        default_root_dir=out, callbacks=[DebugOn(), CollapseGuard(), TwoStageTraining(stage1_epochs=2),
                                                         RunSummary(), DebugOff()],
                        **_device(accelerator), **_quiet())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, datamodule=data)
    if accelerator == "cuda":
        torch.cuda.set_sync_debug_mode(0)
    lines = collections.Counter(f"{w.filename.split('site-packages/')[-1].split(str(REPO) + '/')[-1]}:{w.lineno}"
                                for w in caught if "synchroniz" in str(w.message).lower())
    (out / "syncs.txt").write_text("".join(f"{n} {where}\n" for where, n in lines.most_common()), encoding="utf-8")
    steps = len(counted_steps)
    ours = {where: n for where, n in lines.items() if where.startswith("pet_lightning/") and n >= steps / 2}
    top = ", ".join(f"{where} x{n}" for where, n in lines.most_common(4)) or "none"
    _result(steps > 0 and not ours, f"{steps} steps counted; per-step pet_lightning syncs: {ours or 'none'}; "
            f"most frequent lines: {top} (all in syncs.txt)")


PROBES = {"lora_16mixed": probe_lora_16mixed, "adalora_16mixed": probe_adalora_16mixed, "syncs": probe_syncs}


# ------------------------------------------------------------------------------------------------- command checks
def _summary(log: str) -> dict[str, str]:
    lines = [line for line in log.splitlines() if line.startswith("SUMMARY ")]
    return dict(item.split("=", 1) for item in lines[-1].split()[1:] if "=" in item) if lines else {}


def _finite_headline(summary: dict[str, str]) -> tuple[bool, str]:
    values = {k: v for k, v in summary.items() if k.startswith("best_val_")}
    ok = bool(values) and all(_is_finite(v) for v in values.values())
    return ok, " ".join(f"{k}={v}" for k, v in values.items()) or "no best_val_* in SUMMARY"


def _is_finite(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _fit_args(out: Path, config: str, *extra: str) -> list[str]:
    return [sys.executable, "cli.py", "fit", "--config", config, "--trainer.default_root_dir", str(out),
            "--trainer.enable_progress_bar", "false", "--trainer.logger", "false", *extra]


def command_check(name: str, out: Path, accelerator: str) -> tuple[list[str], Any]:
    """(command, judge(log) -> (ok, figure)) of a check that runs a command line."""
    if name == "quickstart_bf16":
        def judge(log: str) -> tuple[bool, str]:
            on_gpu = "GPU available: True (cuda), used: True" in log
            ok, figure = _finite_headline(_summary(log))
            return ok and (on_gpu or accelerator != "cuda"), f"on_gpu={on_gpu} {figure}"
        return _fit_args(out, "configs/quickstart.yaml", "--trainer.max_epochs", "1", "--trainer.limit_train_batches",
                         "20", "--trainer.limit_val_batches", "5"), judge
    if name == "ehft_lora_16mixed":
        def judge(log: str) -> tuple[bool, str]:
            switched = re.search(r"stage 2 from epoch \d+", log)
            ok, figure = _finite_headline(_summary(log))
            return ok and bool(switched), f"{switched.group(0) if switched else 'NO stage switch'} {figure}"
        return _fit_args(out, "configs/eh_ft/eh_ft_lora.yaml", "--trainer.precision", _fp16(accelerator),
                         "--trainer.max_epochs", "2", "--trainer.gradient_clip_val", "0.1",
                         "--data.init_args.train_subset", "512", "--trainer.limit_val_batches", "4",
                         *_device_flags(accelerator)), judge
    if name == "ddp_nccl":
        def judge(log: str) -> tuple[bool, str]:
            switched = re.search(r"stage 2 from epoch \d+", log)
            nccl = "nccl" in log.lower()
            count = sum(line.startswith("SUMMARY ") for line in log.splitlines())
            return bool(switched) and count == 1, f"stage_switch={bool(switched)} summary_lines={count} nccl={nccl}"
        return _fit_args(out, "configs/eh_ft/eh_ft_bitfit.yaml", "--config", "configs/trainer/gpu.yaml",
                         "--trainer.devices", "2", "--trainer.max_epochs", "2", "--data.init_args.train_subset",
                         "512"), judge
    if name == "ray_2x05":
        return _ray_command(out, accelerator)
    if name == "ab_cuda":
        return _ab_command(out, accelerator)
    raise KeyError(name)


def _device_flags(accelerator: str) -> list[str]:
    return [] if accelerator == "cuda" else ["--trainer.accelerator", "cpu"]


def _ray_command(out: Path, accelerator: str) -> tuple[list[str], Any]:
    import yaml

    config = yaml.safe_load((REPO / "configs/revisiting/sweep_rte_smoke.yaml").read_text(encoding="utf-8"))
    config.update(name="gpu_check", out=str(out / "sweep"), wandb=False)
    path = out / "sweep_gpu_check.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    share = "0.5" if accelerator == "cuda" else "0"
    command = [sys.executable, "cli.py", "sweep", "--config", str(path), "--gpus-per-trial", share,
               "--cpus-per-trial", "1", "--max-concurrent-trials", "2", "--method", "full", "--seed", "1111,2222"]

    def judge(log: str) -> tuple[bool, str]:
        results = out / "sweep" / "results.jsonl"
        text = results.read_text(encoding="utf-8") if results.exists() else ""
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        ok_rows = [r for r in rows if r.get("status", "ok") == "ok"]
        spans = []
        for progress in sorted((out / "sweep" / "runs").glob("*/progress.jsonl")):
            events = [json.loads(line) for line in progress.read_text().splitlines() if line.strip()]
            starts = [e["time"] for e in events if e.get("event") == "start"]
            ends = [e["time"] for e in events if e.get("event") == "done"]
            if starts and ends:
                spans.append((min(starts), max(ends)))
        overlap = len(spans) >= 2 and spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]
        # A record's config_path is relative to the sweep's out folder (records move with it).
        configs = [out / "sweep" / r["config_path"] for r in ok_rows]
        on_gpu = bool(configs) and all("accelerator: gpu" in path.read_text(encoding="utf-8") for path in configs)
        wanted_gpu = on_gpu or accelerator != "cuda"
        return (len(ok_rows) == 2 and overlap and wanted_gpu,
                f"ok_records={len(ok_rows)}/2 overlap={overlap} on_gpu={on_gpu}")

    return command, judge


def _ab_command(out: Path, accelerator: str) -> tuple[list[str], Any]:
    sides = "plain,trainer" if importlib.util.find_spec("accelerate") else "plain"
    precisions = "bf16-mixed,16-mixed" if accelerator == "cuda" else "32-true"
    path = out / "ab.json"
    command = [sys.executable, "-m", "benchmarks.run", "--accelerator", accelerator, "--sections", "ab",
               "--methods", "lora", "--precisions", precisions, "--ab-sides", sides, "--builds", "1", "--blocks", "3",
               "--threads", "4", "--json", str(path)]
    if accelerator != "cuda":
        command += ["--block-steps", "1", "--max-length", "32", "--batch-size", "4"]

    def judge(log: str) -> tuple[bool, str]:
        if not path.exists():
            return False, "no ab.json"
        rows = json.loads(path.read_text()).get("ab", [])
        figures = [f"{r['method']} {r['precision']} " + " ".join(
            f"{side}/ours={ratio['mean']:.3f}" for side, ratio in r["ratios"].items()) for r in rows]
        finite = bool(rows) and all(math.isfinite(ratio["mean"]) for r in rows for ratio in r["ratios"].values())
        return finite, "; ".join(figures) or "no A/B rows"

    return command, judge


# ------------------------------------------------------------------------------------------------- driver
def run_check(name: str, out: Path, accelerator: str, limit: float) -> tuple[bool, str]:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if name in PROBES:
        command = [sys.executable, "-m", "benchmarks.gpu_check", "--probe", name, "--out", str(folder),
                   "--accelerator", accelerator]
        judge = None
    else:
        command, judge = command_check(name, folder, accelerator)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=limit)
        log, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as err:
        log = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        log += (err.stderr or b"").decode(errors="replace") if isinstance(err.stderr, bytes) else (err.stderr or "")
        code = None
    seconds = time.perf_counter() - started
    (folder / "log.txt").write_text(log, encoding="utf-8")
    if code is None:
        return False, f"timed out after {limit:.0f} s (log: {folder / 'log.txt'})"
    if judge is None:
        lines = [line for line in log.splitlines() if line.startswith(RESULT + " ")]
        if not lines:
            last = (log.strip().splitlines() or ["no output"])[-1][:200]
            return False, f"exit {code} in {seconds:.0f} s: {last}"
        status, _, figure = lines[-1][len(RESULT) + 1:].partition(" ")
        return status == "ok" and code == 0, f"{figure} ({seconds:.0f} s)"
    try:
        ok, figure = judge(log)
    except (OSError, ValueError, KeyError) as err:  # a check whose outputs are missing or malformed fails, alone
        ok, figure = False, f"cannot read its results: {type(err).__name__}: {err}"
    if code != 0:
        last = (log.strip().splitlines() or ["no output"])[-1][:200]
        return False, f"exit {code} in {seconds:.0f} s: {last}"
    return ok, f"{figure} ({seconds:.0f} s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check", help="folder for logs (default $OUT)")
    parser.add_argument("--only", default="", help="comma-separated checks (default: all)")
    parser.add_argument("--accelerator", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: run the checks' code paths on the CPU (for developing this script)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    os.environ.setdefault("PET_DATA_DIR", str(REPO.parent / "shared" / "data"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.probe:
        PROBES[args.probe](out, args.accelerator)
        return 0
    import torch

    if args.accelerator == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA, flush=True)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    gpus = torch.cuda.device_count() if args.accelerator == "cuda" else 0
    names = [n for n in (args.only.split(",") if args.only else CHECKS) if n]
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        parser.error(f"--only: unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    device = torch.cuda.get_device_name(0) if gpus else "cpu"
    print(f"gpu_check: {device}, {gpus} GPU(s), torch {torch.__version__} (CUDA {torch.version.cuda}); logs in {out}",
          flush=True)
    # The limits are a GPU's; the CPU mode (developing the script) gets more time and no overall budget.
    scale, budget = (1, BUDGET_S) if args.accelerator == "cuda" else (8, math.inf)
    began, results = time.perf_counter(), {}
    for name in names:
        limit, two_gpus = CHECKS[name]
        if two_gpus and gpus < 2:
            print(f"skip {name}: needs 2 GPUs, {gpus} visible", flush=True)
            continue
        left = budget - (time.perf_counter() - began)
        if left < 10:
            ok, figure = False, "not run: the 8-minute budget is spent"
        else:
            ok, figure = run_check(name, out, args.accelerator, min(limit * scale, left))
        results[name] = ok
        line = f"{'ok' if ok else 'FAIL'} {name}: {figure}"
        print(line, flush=True)
        with open(out / "checks.txt", "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    failed = [n for n, ok in results.items() if not ok]
    print(f"gpu_check: {len(results) - len(failed)} ok, {len(failed)} FAIL in {time.perf_counter() - began:.0f} s",
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
