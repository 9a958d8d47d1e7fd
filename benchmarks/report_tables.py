"""The printed tables of ``python -m benchmarks.run`` and the targets they judge."""

from __future__ import annotations

from typing import Any

from benchmarks.common import Result, Settings, fmt, mb, table
from benchmarks.end_to_end import E2EResult
from benchmarks.interleave import RESUME_STEPS, SETTLE_BLOCKS, WARMUP_STEPS, ABResult
from benchmarks.intervals import RatioInterval, verdict
from benchmarks.runners import SIDES, trainer_method

OVERHEAD_TARGET = 0.95
TRAINER_TARGET, TRAINER_AIM = 1.0, 1.15
E2E_TARGETS = {"lora": 1.2, "bitfit": 1.2}
CHEAP_STEP_TARGET = 0.75
CACHE_TARGET = 10.0
AB_TARGETS = {"plain": OVERHEAD_TARGET, "trainer": TRAINER_TARGET}
AB_TITLES = {"plain": "ours / plain loop", "trainer": "ours / Trainer+peft"}

Target = tuple[str, str, str]


def _point(ok: bool) -> str:
    return ("PASS" if ok else "SHORT") + " (point estimate)"


def interval_verdict(interval: RatioInterval, threshold: float, aim: float | None = None) -> str:
    result = verdict(interval, threshold)
    if aim is not None and result == "PASS" and interval.low >= aim:
        result += " (aim met)"
    return result


def strategies_table(settings: Settings, wanted: list[tuple[str, str, dict[str, Any], str]],
                     ours: dict[str, Result], memory_note: str) -> list[Target]:
    rows = []
    for label, _, _, note in wanted:
        if label not in ours:
            rows.append([label, "n/a (not registered)"] + [""] * 7)
            continue
        r = ours[label]
        rows.append([label, fmt(r.train_sps), fmt(r.eval_sps), f"{(r.step_s or 0) * 1000:.0f}", fmt(r.peak_mb, ".0f"),
                     mb(r.optimizer_bytes), mb(r.checkpoint_bytes), f"{r.trainable:,}", note])
    print(f"\n== Strategies (ours: PETModule + lightning.Trainer, {settings.precision}; each timed alone: "
          f"{settings.warmup} warm-up + {settings.steps} steps x {settings.repeats} repeats, median); {memory_note}")
    print(table(["strategy", "train samples/s", "eval samples/s", "step ms", "peak MB", "optim MB", "ckpt MB",
                 "trainable", "note"], rows))
    targets: list[Target] = []
    if "full" in ours and ours["full"].step_s:
        for label in ("bitfit", "layernorm"):
            if label in ours and ours[label].step_s:
                ratio = ours[label].step_s / ours["full"].step_s
                targets.append((f"{label} step / full step (<= 0.75)", f"{ratio:.2f}x",
                                _point(ratio <= CHEAP_STEP_TARGET)))
        full_mb = ours["full"].peak_mb
        for label, result in ours.items():
            if label != "full" and result.peak_mb is not None and full_mb is not None:
                targets.append((f"peak memory {label} < full", f"{result.peak_mb:.0f} vs {full_mb:.0f} MB",
                                _point(result.peak_mb < full_mb)))
    return targets


def ab_tables(settings: Settings, results: list[ABResult], unregistered: list[str]) -> list[Target]:
    targets: list[Target] = []
    others = [name for name in SIDES if name != "ours" and any(name in r.ratios for r in results)]
    builds, over = ("one build", "mean over block pairs") if settings.ab_builds == 1 else (
        f"{settings.ab_builds} fresh builds", "mean over builds of each build's mean over its block pairs")
    print(f"\n== Per step, interleaved A/B: {builds}, each of {WARMUP_STEPS} warm-up step, {SETTLE_BLOCKS} settling "
          f"(not kept) and {settings.ab_blocks} kept blocks of {RESUME_STEPS} untimed + {settings.ab_block_steps} "
          f"timed steps per side, in the order {', '.join(['ours', *others])} rotated by one each block, the same "
          f"batches; ratio = speed of ours over the other side (> 1: ours faster), {over} [95% interval]")
    rows = []
    for r in results:
        ms = {side: 1000 * sum(times) / len(times) for side, times in r.step_s.items()}
        row = [r.method, r.precision, f"{len(r.builds)} x {len(r.builds[0]['ours'])}", f"{ms['ours']:.0f}"]
        for other in others:
            if other not in r.ratios:
                row += ["", "", ""]
                continue
            interval, threshold = r.ratios[other], AB_TARGETS[other]
            aim = TRAINER_AIM if other == "trainer" else None
            row += [f"{ms[other]:.0f}", str(interval), interval_verdict(interval, threshold, aim)]
            name = f"per step {AB_TITLES[other]} >= {threshold} ({r.method}, {r.precision})"
            targets.append((name, str(interval), interval_verdict(interval, threshold, aim)))
        trainable = r.trainable.get("ours")
        same = all(v == trainable for v in r.trainable.values() if v is not None)
        row.append(f"{trainable:,}" + ("" if same else " (sides differ: " + ", ".join(
            f"{k} {v:,}" for k, v in r.trainable.items() if v is not None) + ")"))
        rows.append(row)
    for method in unregistered:
        rows.append([method, "n/a (not registered)"] + [""] * (3 + 3 * len(others)))
    headers = ["method", "precision", "builds x blocks", "ours ms/step"]
    for other in others:
        target = f">= {AB_TARGETS[other]}" + (f" (aim {TRAINER_AIM})" if other == "trainer" else "")
        headers += [f"{other} ms/step", f"{AB_TITLES[other]} [95%]", f"target {target}"]
    print(table([*headers, "trainable"], rows))
    for r in results:
        if any(counts != [settings.threads] for counts in r.threads.values()):
            print(f"NOTE {r.method} {r.precision}: torch threads per side {r.threads}, not {settings.threads} each")
    if any("trainer" in r.ratios for r in results):
        methods = dict.fromkeys(r.method for r in results)
        print("Trainer side: " + "; ".join(f"{m}: {trainer_method(m)}" for m in methods))
    return targets


def e2e_table(settings: Settings, results: list[E2EResult]) -> list[Target]:
    print(f"\n== End to end, time to result ({settings.e2e_precision}, dev_split, {settings.e2e_epochs} epochs, "
          f"patience {settings.e2e_patience}, train subset {settings.e2e_train_subset or 'all'}, "
          f"{settings.e2e_repeats} repeats, sides alternating first); seconds are means over repeats; "
          "ratio = Trainer wall / ours wall per repeat, mean [95% interval]")
    rows = []
    targets: list[Target] = []
    for r in results:
        for side in ("ours", "trainer"):
            runs = r.runs[side]
            epochs = "/".join(str(run.epochs) for run in runs)
            headline = sum(run.report_headline or 0 for run in runs) / len(runs)
            row = [r.task, r.method, side] + [f"{r.mean(side, k):.2f}" for k in
                                              ("wall_s", "setup_s", "train_s", "eval_s", "ckpt_s", "final_s")]
            row += [f"{r.mean(side, 'ckpt_bytes') / 2**20:.1f}", f"{r.mean(side, 'ckpt_files'):.1f}", epochs,
                    f"{headline:.3f}"]
            threshold = E2E_TARGETS.get(r.method)
            if side == "ours":
                row += [str(r.ratio), interval_verdict(r.ratio, threshold) if threshold else "(no target)",
                        str(r.per_epoch), f"{r.ceiling():.3f}x"]
            else:
                row += ["", "", "", ""]
            rows.append(row)
        if r.method in E2E_TARGETS:
            targets.append((f"end to end ours vs Trainer+peft >= {E2E_TARGETS[r.method]} ({r.task}, {r.method})",
                            str(r.ratio), interval_verdict(r.ratio, E2E_TARGETS[r.method])))
    print(table(["task", "method", "side", "wall s", "setup s", "train s", "eval s", "ckpt s", "final s",
                 "ckpt MB written", "ckpts", "epochs", "report headline", "Trainer/ours [95%]", "target",
                 "per epoch [95%]", "ceiling"], rows))
    print("per epoch: the same ratio on wall time per epoch trained (early stopping ends the sides at epochs of "
          "their own); ceiling: Trainer wall / Trainer train time, the ratio ours would reach training as fast "
          "as Trainer with zero setup, evaluation, checkpoint and final time")
    return targets


def cache_table(cache: dict[str, Any]) -> list[Target]:
    print(f"\n== Linear probing with the feature cache ({cache['examples']} training examples, whole epochs)")
    print(table(["", "epoch s"], [["uncached epoch", f"{cache['uncached_s']:.3f}"],
                                  ["cached: first epoch (fills the cache)", f"{cache['cached_first_s']:.3f}"],
                                  ["cached: later epochs", f"{cache['cached_later_s']:.3f}"]]))
    return [("cached linear-probing epoch >= 10x faster than uncached", f"{cache['speedup']:.1f}x",
             _point(cache["speedup"] >= CACHE_TARGET))]


def scaling_table(settings: Settings, scaling: list[dict[str, Any]]) -> None:
    print(f"\n== Scaling: time per epoch, EXTRAPOLATED: ceil(examples / {settings.batch_size}) steps x the step time "
          f"of {settings.scaling_steps} timed steps on RTE batches (RTE has 2490 training examples)")
    print(table(["strategy", "examples", "max length", "step ms", "epoch s"],
                [[r["strategy"], r["examples"], r["max_length"], f"{r['step_s'] * 1000:.0f}", f"{r['epoch_s']:.1f}"]
                 for r in scaling]))


def targets_table(targets: list[Target]) -> None:
    print("\n== Targets (interval targets: PASS = whole 95% interval at or above the threshold, SHORT = wholly "
          "below, unresolved = straddles it)")
    print(table(["target", "measured", "result"], [list(t) for t in targets]))
