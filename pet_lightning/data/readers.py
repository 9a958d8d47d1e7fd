"""Readers for the official GLUE (tsv) and SuperGLUE (jsonl) files and for the Hugging Face hub.

Every reader returns plain row dictionaries. Problems with the files are reported as :class:`DataError`, a
one-line message that names the file (and line) and what to do about it.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from pet_lightning.errors import PetLightningError
from pet_lightning.paths import DATA_DIR_ENV, from_start
from pet_lightning.tasks import TaskSpec


class DataError(PetLightningError):
    """A data file or data source is missing or malformed; the message says which and how to fix it."""


def default_data_dir() -> str | None:
    """The data root named by ``PET_DATA_DIR`` (absolute: a relative one means the folder the command started in), or
    None (then tasks load from the Hugging Face hub)."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return from_start(value) if value else None


def task_file(data_dir: str | os.PathLike, spec: TaskSpec, split: str) -> Path:
    """Path of a split's official file, e.g. ``<root>/glue/RTE/dev.tsv``; a missing file is a DataError."""
    if split not in spec.files:
        raise DataError(f"task {spec.name} has no {split!r} split: it has {', '.join(spec.files)}")
    root = Path(data_dir)
    path = root / spec.benchmark / spec.folder / spec.files[split]
    if not path.is_file():
        raise DataError(
            f"missing data file {path}: put the official {spec.benchmark.upper()} files for {spec.folder} under "
            f"{root / spec.benchmark / spec.folder} or point PET_DATA_DIR / --data.data_dir at a root that has them"
        )
    return path


def read_tsv(path: Path, columns: dict[str, str], headerless: dict[str, int] | None = None) -> list[dict[str, str]]:
    """Read a GLUE tsv into rows keyed by our field names.

    GLUE files hold stray quote characters, so quoting is off; ``utf-8-sig`` drops MRPC's byte-order mark. A
    file with a header is read by column name; ``headerless`` gives positions for files without one (CoLA).
    Fields missing from the header (labels in test files) are left out of the rows.
    """
    with path.open(encoding="utf-8-sig", newline="") as handle:
        lines = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not lines:
        raise DataError(f"{path} is empty: replace it with the official file")
    if headerless:
        positions, body, first_line = dict(headerless), lines, 1
    else:
        header = lines[0]
        positions = {name: header.index(col) for name, col in columns.items() if col in header}
        if "text_a" not in positions:
            raise DataError(
                f"{path}: header {header} has no column {columns['text_a']!r}: is this the official file?"
            )
        body, first_line = lines[1:], 2
    width = len(lines[0]) if not headerless else max(positions.values()) + 1
    rows = []
    for offset, cells in enumerate(body):
        if not cells:
            continue
        if len(cells) < width:
            raise DataError(
                f"{path}:{first_line + offset}: malformed row with {len(cells)} columns, expected {width}: "
                "fix or remove that line"
            )
        rows.append({name: cells[pos] for name, pos in positions.items()})
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a jsonl file; a line that is not a JSON object is a DataError naming file and line."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: malformed JSON line ({err.msg}): fix or remove that line") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line: fix or remove that line")
            rows.append(row)
    return rows


def read_hub(spec: TaskSpec, split: str) -> list[dict[str, Any]]:
    """Load one split from the Hugging Face hub; offline, fail at once with what to do instead."""
    import datasets

    hub_split = spec.hub_splits.get(split, split)
    try:
        dataset = datasets.load_dataset(spec.hub_path, spec.hub_config, split=hub_split)
    except Exception as err:  # the hub raises many types (ConnectionError, OfflineModeIsEnabled, ...)
        raise DataError(
            f"could not load {spec.hub_path}/{spec.hub_config} split {hub_split!r} from the Hugging Face hub "
            f"({type(err).__name__}): with no network, set PET_DATA_DIR or --data.data_dir to a local data root "
            f"holding {spec.benchmark}/{spec.folder}"
        ) from None
    return [dict(row) for row in dataset]
