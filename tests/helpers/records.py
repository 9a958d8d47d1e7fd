"""Hand-made results records for the study-layout tests (the fields records.ok_record writes that layouts read)."""

from __future__ import annotations

from pet_lightning.tasks import get_task


def make_record(task: str, method: str, seed: int, score: float, study: str, *, seed_mode: str = "both",
                train_examples: int = 800, pct: float = 1.0, steps: int = 100, best_step: int | None = None,
                wall_s: float = 30.0, **extra) -> dict:
    """One ``ok`` record; ``score`` on the 0-100 scale (stored as a fraction, as runs store it)."""
    return {
        "run_id": f"{task}.{method}.{seed_mode}.{seed}", "task": task, "method": method, "seed": seed,
        "seed_mode": seed_mode, "init_seed": seed, "protocol": "dev_split", "monitor": "val/loss",
        "config_hash": f"{task}-{method}-{seed_mode}", "run_hash": f"{task}-{method}-{seed_mode}-{seed}",
        "headline": get_task(task).headline, "score": score / 100, "steps": steps,
        "best_step": steps // 2 if best_step is None else best_step, "train_examples": train_examples,
        "trainable_pct": pct, "status": "ok", "study": study, "scale": "cpu", "wall_s": wall_s, "config_path": "",
        **extra,
    }


def mean(values) -> float:
    return sum(values) / len(values)


def md_rows(path) -> dict[str, list[str]]:
    """Markdown table rows keyed by their first cell (header and rule included)."""
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def csv_rows(path) -> list[dict[str, str]]:
    import csv

    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def finding(report_md, claim_start: str) -> list[str]:
    """The cells of the findings row whose claim starts with ``claim_start``."""
    for line in report_md.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(claim_start):
            return cells
    raise AssertionError(f"no finding starting {claim_start!r} in {report_md}")
