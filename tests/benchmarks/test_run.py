"""The benchmark runs end to end in quick mode and prints every section, each ratio with its interval (not a
timing test: a tiny random-init backbone keeps it fast)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from benchmarks import run
from benchmarks.strategy_table import STRATEGY_ROWS

INTERVAL = r"-?\d+\.\d{3}x \[-?\d+\.\d{3}, -?\d+\.\d{3}\]"


@pytest.fixture(scope="module")
def quick(tiny_backbone):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        figures = run.main(["--quick", "--backbone", tiny_backbone, "--strategies", "full,lora", "--steps", "1",
                            "--methods", "lora", "--precisions", "32-true,bf16-mixed"])
    return figures, out.getvalue()


def test_quick_benchmark_prints_every_section(quick):
    figures, out = quick
    for title in ("== Strategies", "== Per step, interleaved A/B", "== End to end", "== Linear probing",
                  "== Scaling", "== Targets"):
        assert title in out
    assert set(figures["section_s"]) == {"strategies", "ab", "e2e", "cache", "scaling"}
    full, lora = figures["strategies"]["full"], figures["strategies"]["lora"]
    assert full["train_sps"] > 0 and full["peak_mb"] is not None and full["eval_sps"] > 0
    assert len(full["train_sps_repeats"]) == 2  # quick mode: two repeats, median reported
    # Only trainable tensors have optimizer state and go into our checkpoints.
    assert 0 < lora["optimizer_bytes"] < full["optimizer_bytes"] / 5
    assert {r["max_length"] for r in figures["scaling"]} == {32, 64}
    assert figures["cache"]["cached_later_s"] < figures["cache"]["uncached_s"]


def test_both_precisions_are_compared_against_both_loops_with_intervals(quick):
    figures, out = quick
    assert [(r["method"], r["precision"]) for r in figures["ab"]] == [("lora", "32-true"), ("lora", "bf16-mixed")]
    for result in figures["ab"]:
        assert set(result["ratios"]) == {"plain", "trainer"}
        # quick: 2 fresh builds of 3 blocks per side; the interval is over the 2 build means
        assert len(result["builds"]) == 2 and all(len(t) == 3 for b in result["builds"] for t in b.values())
        assert all(r["n"] == 2 for r in result["ratios"].values())
    rows = [line for line in out.splitlines() if re.match(r"lora\s+(32-true|bf16-mixed)\s+2 x 3\s", line)]
    assert len(rows) == 2 and all(len(re.findall(INTERVAL, row)) == 2 for row in rows)
    e2e = figures["e2e"][0]
    assert (e2e["task"], e2e["method"]) == ("cb", "bitfit") and e2e["ratio"]["n"] == 2
    assert [len(e2e["runs"][side]) for side in ("ours", "trainer")] == [2, 2]


def test_every_target_has_a_verdict_and_interval_targets_print_their_interval(quick):
    figures, _ = quick
    names = [name for name, _, _ in figures["targets"]]
    for wanted in ("per step ours / plain loop >= 0.95 (lora, 32-true)",
                   "per step ours / Trainer+peft >= 1.0 (lora, bf16-mixed)",
                   "end to end ours vs Trainer+peft >= 1.2 (cb, bitfit)"):
        assert wanted in names
    for name, measured, result in figures["targets"]:
        assert result.split()[0] in ("PASS", "SHORT", "unresolved")
        if name.startswith(("per step", "end to end")):
            assert re.fullmatch(INTERVAL, measured)
        else:
            assert result.endswith("(point estimate)")


def test_unregistered_strategies_are_reported_not_run(capsys, monkeypatch, tiny_backbone):
    assert run.STRATEGY_ROWS is STRATEGY_ROWS
    monkeypatch.setattr(run, "STRATEGY_ROWS", [("made-up", "no_such_strategy", {}, "")])
    run.main(["--quick", "--backbone", tiny_backbone, "--strategies", "no_such_strategy", "--sections",
              "strategies,ab", "--methods", "no_such_strategy"])
    out = capsys.readouterr().out
    assert re.search(r"made-up\s+n/a \(not registered\)", out)
    assert re.search(r"no_such_strategy\s+n/a \(not registered\)", out)


def test_counts_are_options_and_unknown_sections_are_refused(data_dir):
    settings = run.settings_from(run.parser().parse_args(
        ["--blocks", "12", "--block-steps", "3", "--precisions", "bf16-mixed", "--e2e-train-subset", "0",
         "--e2e-tasks", "cb,rte"]
    ))
    assert (settings.ab_blocks, settings.ab_block_steps, settings.precisions) == (12, 3, ("bf16-mixed",))
    assert settings.precision == "bf16-mixed" and settings.e2e_train_subset is None
    assert settings.e2e_tasks == ("cb", "rte")
    defaults = run.settings_from(run.parser().parse_args([]))
    assert defaults.e2e_repeats == 3
    with pytest.raises(SystemExit):
        run.main(["--sections", "strategies,trainer"])


def test_the_ab_options_are_builds_blocks_and_block_steps(data_dir, capsys):
    settings = run.settings_from(run.parser().parse_args(["--builds", "8", "--blocks", "6", "--block-steps", "2"]))
    assert (settings.ab_builds, settings.ab_blocks, settings.ab_block_steps) == (8, 6, 2)
    for argv in (["--builds", "0"], ["--half-width", "0.03"]):
        with pytest.raises(SystemExit):
            run.main(argv)
        capsys.readouterr()


@pytest.mark.parametrize("emulated", [False, True])
def test_auto_precisions_leave_out_bf16_only_where_the_cpu_emulates_it(monkeypatch, capsys, emulated):
    monkeypatch.setattr(run, "bf16_emulated", lambda accelerator: emulated)
    monkeypatch.setattr(run, "cpu_bf16_slowdown", lambda: 14.7)
    auto = run.settings_from(run.parser().parse_args([]))
    if emulated:
        assert (auto.precisions, auto.precision, auto.e2e_precision) == (("32-true",), "32-true", "32-true")
        assert "this CPU emulates bf16 (a bf16 linear layer 14.7x slower" in capsys.readouterr().err
    else:
        assert (auto.precisions, auto.e2e_precision) == (("32-true", "bf16-mixed"), "bf16-mixed")
        assert "emulates" not in capsys.readouterr().err
    named = run.settings_from(run.parser().parse_args(["--precisions", "bf16-mixed", "--e2e-precision", "bf16-mixed"]))
    assert (named.precisions, named.e2e_precision) == (("bf16-mixed",), "bf16-mixed")  # named: always timed
    assert ("about 15x longer" in capsys.readouterr().err) is emulated
