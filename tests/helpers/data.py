"""Data for tests: a real GLUE task cut to a few batches and short sequences, a fixed probe batch, and hand-made
SuperGLUE files."""

from __future__ import annotations

import json
from pathlib import Path

from pet_lightning import GlueDataModule


def small_glue(data_dir: str, task: str = "rte", *, batch_size: int = 8, max_length: int = 32,
               train_subset: int = 16, order_seed: int = 0, **settings) -> GlueDataModule:
    """``task`` from the real data root, ``train_subset`` training examples in batches of ``batch_size``,
    ``max_length`` tokens, in the order fixed by ``order_seed``; ``settings`` go to the datamodule as they are
    (``backbone``, ``protocol``, ``eval_batch_size``...)."""
    return GlueDataModule(task=task, data_dir=data_dir, batch_size=batch_size, max_length=max_length,
                          train_subset=train_subset, order_seed=order_seed, **settings)


def rte_data(data_dir: str) -> GlueDataModule:
    """Real RTE kept tiny for CI: 16 training examples in batches of 8 (2 steps an epoch), 32 tokens."""
    return small_glue(data_dir, eval_batch_size=16)


def probe_batch(backbone: str) -> dict:
    """Four fixed sentence pairs tokenized by ``backbone``'s tokenizer: a batch to compare two models' logits on."""
    from pet_lightning.backbones import load_tokenizer

    tokens = load_tokenizer(backbone)(["a cat sat", "rain falls on the plain", "no", "it is what it is"],
                                      ["a cat", "it rains", "yes", "it is"], padding=True, return_tensors="pt")
    return dict(tokens)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """``rows`` as a jsonl file (one JSON object a line) at ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def record_row(idx: int, answers: list[str] | None) -> dict:
    """One ReCoRD row in the official layout: a passage naming Ann Lee (twice), Bob Ray and Paris, and a query with
    ``answers`` (none for a test row)."""
    text = "Ann Lee met Bob Ray in Paris.\n@highlight\nBob Ray thanked Ann Lee"
    entities = [
        {"start": text.index(name), "end": text.index(name) + len(name) - 1}
        for name in ("Ann Lee", "Bob Ray", "Paris")
    ]
    # "Ann Lee" occurs twice in the text; the candidate list holds it once.
    entities.append({"start": text.rindex("Ann Lee"), "end": text.rindex("Ann Lee") + 6})
    qa = {"query": "@placeholder was thanked by Bob Ray.", "idx": 10 + idx}
    if answers is not None:
        qa["answers"] = [{"start": 0, "end": len(a) - 1, "text": a} for a in answers]
    return {"source": "test", "passage": {"text": text, "entities": entities}, "qas": [qa], "idx": idx}
