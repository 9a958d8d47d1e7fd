"""Task files written by the tests: small pair-classification and regression tasks in each format, and MRPC
re-exported under other column names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

PAIR_LABELS = ("different", "same")
_WORDS = ("river", "stone", "cloud", "lamp", "forest", "window", "garden", "bridge", "violin", "candle", "marble",
          "harbor")


def pair_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Sentence pairs labelled ``same`` when both sentences start with the same word (learnable, string labels)."""
    records = []
    for i in range(rows):
        a, b = _WORDS[(i * 7 + seed) % len(_WORDS)], _WORDS[(i * 5 + seed) % len(_WORDS)]
        b = a if i % 2 else b
        records.append({"left_sentence": f"{a} number {i} stands near the old {_WORDS[i % 12]}",
                        "right_sentence": f"{b} number {i + 1} waits by the {_WORDS[(i + 3) % 12]}",
                        "verdict": PAIR_LABELS[a == b], "doc": f"d{i // 4}"})
    return pd.DataFrame(records)


def regression_frame(rows: int) -> pd.DataFrame:
    """Single texts scored by how many times 'good' occurs in them (a float label)."""
    return pd.DataFrame([{"review": f"item {i} is " + " ".join(["good"] * (i % 5)) + " overall",
                          "stars": float(i % 5) / 2} for i in range(rows)])


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    kind = path.suffix
    if kind == ".csv":
        frame.to_csv(path, index=False)
    elif kind == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif kind == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


def write_task(folder: Path, frames: dict[str, pd.DataFrame], ext: str, **keys: Any) -> Path:
    """Write each split's frame as ``<split>.<ext>`` and a ``task.yaml`` naming them, with ``keys`` as the task's."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {split: write_frame(frame, folder / f"{split}{ext}").name for split, frame in frames.items()}
    task = {"files": files, **keys}
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False), encoding="utf-8")
    return path


def pair_task(folder: Path, ext: str = ".csv", **keys: Any) -> Path:
    settings = {"name": "pair-task", "text": ["left_sentence", "right_sentence"], "label": "verdict",
                "type": "classification", **keys}
    return write_task(folder, {"train": pair_frame(64), "validation": pair_frame(24, seed=3)}, ext, **settings)


def regression_task(folder: Path, ext: str = ".csv", **keys: Any) -> Path:
    settings = {"name": "score-task", "text": ["review"], "label": "stars", "type": "regression", **keys}
    return write_task(folder, {"train": regression_frame(60), "validation": regression_frame(20)}, ext, **settings)


def mrpc_reexport(data_dir: str, folder: Path, ext: str = ".csv") -> Path:
    """MRPC's official train and dev files as a task file with other column names (labels stay ``0`` / ``1``)."""
    from pet_lightning.data.readers import read_tsv
    from pet_lightning.tasks import get_task

    spec = get_task("mrpc")
    frames = {}
    for split, name in (("train", "train.tsv"), ("validation", "dev.tsv")):
        rows = read_tsv(Path(data_dir) / "glue" / "MRPC" / name, spec.columns)
        frames[split] = pd.DataFrame({"s1": [r["text_a"] for r in rows], "s2": [r["text_b"] for r in rows],
                                      "is_paraphrase": [r["label"] for r in rows]})
    return write_task(folder, frames, ext, name="mrpc-copy", text=["s1", "s2"], label="is_paraphrase",
                      type="classification", metrics=["f1", "accuracy"])
