"""Do two runs of the benchmark agree? Every ratio with an interval, side by side, as a Markdown table.

    python -m benchmarks.run --json run1.json
    python -m benchmarks.run --json run2.json
    python -m benchmarks.compare_runs run1.json run2.json

Two runs agree on a ratio when their 95% intervals overlap; the stricter reading, each run's mean inside the
other's interval, gets its own column. Ratios present in only one run are listed as missing from the other.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.intervals import RatioInterval
from pet_lightning.reports.tables import markdown_table

Interval = dict[str, float]


def ratios(figures: dict[str, Any]) -> dict[str, Interval]:
    """Every interval ratio of one ``--json`` file, keyed by what it compares."""
    found: dict[str, Interval] = {}
    for result in figures.get("ab", []):
        for other, interval in result["ratios"].items():
            found[f"per step ours / {other} ({result['method']}, {result['precision']})"] = interval
    for result in figures.get("e2e", []):
        where = f"({result['task']}, {result['method']})"
        found[f"end to end Trainer / ours {where}"] = result["ratio"]
        if "per_epoch" in result:
            found[f"end to end per epoch Trainer / ours {where}"] = result["per_epoch"]
    return found


def _text(interval: Interval | None) -> str:
    if interval is None:
        return "(missing)"
    return str(RatioInterval.from_dict(interval))  # as the benchmark prints it


def agreement(a: Interval, b: Interval) -> tuple[bool, bool]:
    """(the intervals overlap, each mean lies inside the other's interval)."""
    overlap = a["low"] <= b["high"] and b["low"] <= a["high"]
    inside = a["low"] <= b["mean"] <= a["high"] and b["low"] <= a["mean"] <= b["high"]
    return overlap, inside


def compare(first: dict[str, Any], second: dict[str, Any]) -> tuple[list[list[str]], int]:
    """Rows of the comparison table and the number of ratios whose intervals do not overlap (or are missing)."""
    a, b = ratios(first), ratios(second)
    rows, disagree = [], 0
    for name in list(dict.fromkeys([*a, *b])):
        if name not in a or name not in b:
            rows.append([name, _text(a.get(name)), _text(b.get(name)), "n/a", "n/a"])
            disagree += 1
            continue
        overlap, inside = agreement(a[name], b[name])
        disagree += not overlap
        rows.append([name, _text(a[name]), _text(b[name]), "yes" if overlap else "NO", "yes" if inside else "no"])
    return rows, disagree


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    args = p.parse_args(argv)
    for path in (args.first, args.second):
        if not path.is_file():
            p.error(f"{path}: no such file; write one with python -m benchmarks.run --json {path}")
    first, second = (json.loads(path.read_text()) for path in (args.first, args.second))
    rows, disagree = compare(first, second)
    print(markdown_table(["ratio", args.first.name, args.second.name, "intervals overlap", "means inside"], rows))
    print(f"{len(rows) - disagree} of {len(rows)} ratios agree (intervals overlap)")
    return 1 if disagree else 0


if __name__ == "__main__":
    raise SystemExit(main())
