"""SuperGLUE's RTE in its jsonl layout, written from GLUE's RTE tsv files (the same examples): the shared data holds
GLUE's RTE but not SuperGLUE's."""

from __future__ import annotations

import csv
import json
from pathlib import Path

GLUE_TO_SUPERGLUE_RTE = {"train.tsv": "train.jsonl", "dev.tsv": "val.jsonl", "test.tsv": "test.jsonl"}


def write_rte_jsonl(glue_root: Path, out_root: Path) -> None:
    """GLUE's RTE tsv files rewritten in SuperGLUE's RTE jsonl layout (same examples, same label strings)."""
    folder = out_root / "superglue" / "RTE"
    folder.mkdir(parents=True)
    for tsv, jsonl in GLUE_TO_SUPERGLUE_RTE.items():
        with (glue_root / "glue" / "RTE" / tsv).open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
        with (folder / jsonl).open("w", encoding="utf-8") as handle:
            for row in rows:
                line = {"premise": row["sentence1"], "hypothesis": row["sentence2"], "idx": int(row["index"])}
                if "label" in row:
                    line["label"] = row["label"]
                handle.write(json.dumps(line) + "\n")
