"""Run one ``cli.py fit`` config in-process and return the fields of its ``SUMMARY`` line.

Shared by the table scripts: each row is a real ``fit`` of a shipped config with a few overrides, so the
figures come from the same code path users run.
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

from pet_lightning.cli import run_lightning


def run_config(config: str, overrides: list[str], root: Path) -> dict[str, str]:
    """``fit --config config *overrides`` with logs and checkpoints under ``root``.

    Returns the ``SUMMARY`` fields plus ``ckpt_bytes`` (the first checkpoint's size, ``n/a`` without one) and
    ``wall_s`` (the whole call, data loading and evaluation included).
    """
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        run_lightning(["fit", "--config", config, "--trainer.logger=false", f"--trainer.default_root_dir={root}",
                       "--trainer.enable_progress_bar=false", *overrides])
    summaries = [line for line in out.getvalue().splitlines() if line.startswith("SUMMARY ")]
    if not summaries:
        raise RuntimeError(f"fit --config {config} printed no SUMMARY line; its output ended with:\n"
                           + out.getvalue()[-2000:])
    fields = dict(item.split("=", 1) for item in summaries[-1].split()[1:])
    checkpoints = sorted(root.rglob("*.ckpt"))
    fields["ckpt_bytes"] = str(checkpoints[0].stat().st_size) if checkpoints else "n/a"
    fields["wall_s"] = f"{time.perf_counter() - start:.0f}"
    return fields


def best_headline(fields: dict[str, str]) -> tuple[str, float]:
    """The ``best_val_<metric>`` entry of a SUMMARY: (metric name, value)."""
    key = next(key for key in fields if key.startswith("best_val_"))
    return key.removeprefix("best_val_"), float(fields[key])
