"""Task files: a labelled text dataset of the user's own, described in YAML, as one more task source.

A task file names its data (``files`` in csv, tsv, jsonl or parquet, relative to the YAML; or ``hub`` for
``datasets.load_dataset``), its text columns, its label column and its problem type; docs/task_files.md lists every
key. :func:`load_task_file` turns it into a :class:`FileTaskSpec`, a :class:`~pet_lightning.tasks.TaskSpec` that
knows where its rows are; :class:`~pet_lightning.data.source.TaskFileSource` reads them (:func:`file_rows`) in place
of the official layout's reader. What happens after reading (the protocols' splits, encoding, training, the audit)
is the same code as for the built-in tasks: examples are formulated as the GLUE ``pair`` formulation formulates them.

Every file is read and checked when the task file is loaded, so a bad column, label or empty split is refused
before anything trains, with one line naming the file, the column or the value, and the fix.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pet_lightning.data.readers import DataError
from pet_lightning.paths import from_start, start_dir
from pet_lightning.tasks import TASKS, TaskSpec, get_task, register_task_finder

SPLITS = ("train", "validation", "test")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
REQUIRED_KEYS = ("name", "text", "label", "type")
OPTIONAL_KEYS = ("files", "hub", "split", "label_values", "metrics", "headline", "group")
# The metrics each problem type can log (names as the built-in tasks log them), and the defaults users expect.
TYPE_METRICS = {
    "classification": ("accuracy", "f1", "macro_f1", "mcc"),
    "regression": ("pearson", "spearman"),
}
DEFAULT_METRICS = {"binary": ("accuracy", "f1", "mcc"), "multiclass": ("accuracy", "macro_f1"),
                   "regression": ("pearson", "spearman")}
# The name goes into run ids (``<task>.<method>.<mode>.<seed>.<hash>``) and folder names: no dots, no slashes.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
BENCHMARK = "task_file"
DOCS = "docs/task_files.md"

LOADED: dict[str, FileTaskSpec] = {}
"""Task files loaded in this process, by lower-case name: the model (linked to the data module's task name), sweep
records and reports find the task by its name once its file has been read."""


class TaskFileError(DataError):
    """A task file, or a data file it names, that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class FileTaskSpec(TaskSpec):
    """A task described by a task file. Beside :class:`TaskSpec`'s facts it knows where its rows come from.

    Args:
        task_file: The YAML file, absolute (what configs, checkpoints and run configs name the task by).
        paths: Our split name -> absolute data file (empty for a hub source).
        text_columns: The one or two text columns (``text_a``, ``text_b``).
        label_column: The label column.
        group_columns: Columns whose equal values must stay on one side of every split boundary.
        hub: ``{"name": ..., "config": ...}`` for ``datasets.load_dataset`` (empty for files).
        carved_from_train: No validation file: the train file is the only labelled set, and ``train_holdout``
            carves train, selection and report sets out of it (as for BoolQ's dev set).
    """

    task_file: str = ""
    paths: dict[str, str] = field(default_factory=dict)
    text_columns: tuple[str, ...] = ()
    label_column: str = ""
    group_columns: tuple[str, ...] = ()
    hub: dict[str, str] = field(default_factory=dict)
    carved_from_train: bool = False

    @property
    def reference(self) -> str:
        return self.task_file


def file_rows(spec: FileTaskSpec, split: str) -> tuple[list[dict[str, Any]], str]:
    """(the split's checked rows as the ``pair`` formulation reads them, with their group keys; where they came
    from). Without a validation file, ``validation`` reads the train file."""
    frame, where = _split_frame(spec, "train" if spec.carved_from_train and split == "validation" else split)
    return _rows(spec, frame, where, labelled=split != "test"), where


def is_task_file(name: str) -> bool:
    return name.strip().lower().endswith((".yaml", ".yml"))


@register_task_finder
def find_task(name: str) -> FileTaskSpec | None:
    """The task a task file path names (loaded now), or a task file loaded before under this name; else None."""
    if is_task_file(name):
        return load_task_file(name)
    return LOADED.get(name.strip().lower())


def check_protocol(spec: TaskSpec, protocol: str) -> None:
    """A task file without a validation file runs ``train_holdout`` only (the other protocols need a dev set)."""
    if isinstance(spec, FileTaskSpec) and spec.carved_from_train and protocol != "train_holdout":
        raise TaskFileError(
            f"task {spec.name} ({spec.task_file}) has no validation file, so protocol {protocol!r} cannot run: use "
            "protocol train_holdout (--data.init_args.protocol train_holdout; a sweep's `protocol: train_holdout`), "
            "or add files.validation"
        )


def sweep_tasks(tasks: list[str], protocol: str) -> tuple[list[str], dict[str, str]]:
    """A sweep's tasks as names (what run ids and records hold), and name -> path of each task file among them."""
    specs = [get_task(task) for task in tasks]
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise TaskFileError(f"tasks {tasks} name {twice} more than once: list each task (and task file name) once")
    for spec in specs:
        check_protocol(spec, protocol)
    return names, {spec.name: spec.reference for spec in specs if isinstance(spec, FileTaskSpec)}


def load_task_file(path: str | Path) -> FileTaskSpec:
    """Read, check and register the task file at ``path`` (relative paths: against the start directory)."""
    named, resolved = str(path), Path(from_start(path))
    if not resolved.is_file():
        raise TaskFileError(f"task file {named} does not exist: fix the path (relative to {start_dir()})")
    spec = _load(str(resolved), _stamp(resolved))
    LOADED[spec.name.lower()] = spec
    return spec


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=32)
def _load(path: str, stamp: tuple[int, int]) -> FileTaskSpec:
    # Cached by the YAML's modification stamp: the model, data module and sweep each ask for the same task.
    raw = _read_yaml(path)
    name = raw["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise TaskFileError(f"{path}: name {name!r} must be letters, digits, '-' or '_' (it names runs and folders): "
                            "fix `name`")
    if name.lower() in TASKS:
        raise TaskFileError(f"{path}: name {name!r} is a built-in task: rename the task (name: my-{name.lower()})")
    kind = raw["type"]
    if kind not in TYPE_METRICS:
        raise TaskFileError(f"{path}: type {kind!r}: use classification or regression")
    texts = _column_list(raw["text"], path, "text")
    if len(texts) not in (1, 2):
        raise TaskFileError(f"{path}: text lists {len(texts)} columns: give one column, or two for a pair task")
    groups = _column_list(raw.get("group") or [], path, "group")
    names = _split_names(raw.get("split"), path)
    paths, hub = _sources(raw, path, names)
    base = FileTaskSpec(
        name=name, benchmark=BENCHMARK, folder=name, files={s: s for s in (paths or SPLITS)}, hub_path="",
        hub_config="", columns={}, label_values=("0", "1"), kind=kind, metrics=("accuracy",), headline="accuracy",
        train_size=0, task_file=path, paths=paths, text_columns=tuple(texts), label_column=str(raw["label"]),
        group_columns=tuple(groups), hub=hub, hub_splits=names,
    )
    if hub:
        base = replace(base, files={s: s for s in _hub_splits(base)})
    if "train" not in base.files:
        raise TaskFileError(f"{path}: no train split: add files.train (the labelled examples to train on)")
    train, where = _split_frame(base, "train")
    _check_columns(base, train, where, labelled=True)
    label_values = _label_values(raw.get("label_values"), base, train, where)
    spec = replace(base, label_values=label_values, train_size=len(train), **_metrics(raw, path, kind, label_values))
    spec = replace(spec, carved_from_train="validation" not in spec.files)
    if spec.carved_from_train:
        tests = {s: s for s in spec.files if s == "test"}
        spec = replace(spec, files={"train": "train", "validation": "train", **tests})
    for split in spec.files:
        if not (spec.carved_from_train and split == "validation"):  # that one is the train file again
            _rows(spec, *_split_frame(spec, split), labelled=split != "test")  # columns, labels, numbers: now
    return spec


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        problem = str(err).splitlines()[0]
        raise TaskFileError(f"{path} is not valid YAML ({problem}): fix the file") from None
    if not isinstance(raw, dict):
        raise TaskFileError(f"{path} holds no mapping of task keys: see {DOCS}")
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise TaskFileError(f"{path}: missing key(s) {missing}: add them (see {DOCS})")
    unknown = sorted(set(raw) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise TaskFileError(f"{path}: unknown key(s) {unknown}: the keys are "
                            f"{', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}")
    if ("files" in raw) == ("hub" in raw):
        raise TaskFileError(f"{path}: give either `files` (local data files) or `hub` (a Hugging Face dataset)")
    return raw


def _column_list(value: Any, path: str, key: str) -> list[str]:
    columns = [value] if isinstance(value, str) else value
    if not isinstance(columns, list) or not all(isinstance(c, (str, int)) for c in columns):
        raise TaskFileError(f"{path}: `{key}` must be a column name or a list of column names")
    return [str(c) for c in columns]


def _split_names(value: Any, path: str) -> dict[str, str]:
    """Our split name -> the name the files (or the hub) use."""
    value = value or {}
    if not isinstance(value, dict) or set(value) - set(SPLITS):
        raise TaskFileError(f"{path}: `split` maps our split names ({', '.join(SPLITS)}) to yours, e.g. "
                            "split: {validation: dev}")
    return {ours: str(theirs) for ours, theirs in value.items()}


def _sources(raw: dict[str, Any], path: str, names: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    if "hub" in raw:
        hub = raw["hub"]
        if not isinstance(hub, dict) or "name" not in hub:
            raise TaskFileError(f"{path}: `hub` needs a dataset name: hub: {{name: <dataset>, config: <config>}}")
        return {}, {"name": str(hub["name"]), "config": str(hub["config"]) if hub.get("config") else ""}
    files = raw["files"]
    if not isinstance(files, dict) or not files:
        raise TaskFileError(f"{path}: `files` maps splits to data files: files: {{train: train.csv, ...}}")
    theirs = {their: ours for ours, their in names.items()}
    paths = {}
    for key, name in files.items():
        split = theirs.get(key, key)
        if split not in SPLITS:
            raise TaskFileError(f"{path}: files.{key} is no split: use train, validation and test, or map your "
                                f"names with `split` (split: {{validation: {key}}})")
        data = (Path(path).parent / str(name)).resolve()
        if data.suffix.lower() not in FORMATS:
            raise TaskFileError(f"{path}: files.{key} {name}: use a .csv, .tsv, .jsonl or .parquet file")
        if not data.is_file():
            raise TaskFileError(f"{path}: files.{key} {data} does not exist: fix the path (relative to "
                                f"{Path(path).parent})")
        paths[split] = str(data)
    return paths, {}


def _hub_splits(spec: FileTaskSpec) -> list[str]:
    import datasets

    try:
        names = datasets.get_dataset_split_names(spec.hub["name"], spec.hub["config"] or None)
    except Exception as err:  # the hub raises many types (ConnectionError, OfflineModeIsEnabled, ...)
        raise TaskFileError(f"{spec.task_file}: could not reach hub dataset {spec.hub['name']} "
                            f"({type(err).__name__}): with no network, export it to files and use `files`") from None
    theirs = {spec.hub_splits.get(s, s): s for s in SPLITS}
    return [theirs[name] for name in names if name in theirs]


def _split_frame(spec: FileTaskSpec, split: str):
    """(the split's table as a pandas DataFrame, where it came from)."""
    if spec.hub:
        return _hub_frame(spec.hub["name"], spec.hub["config"], spec.hub_splits.get(split, split))
    path = Path(spec.paths[split])
    return _file_frame(str(path), *_stamp(path)), str(path)


@functools.lru_cache(maxsize=16)
def _file_frame(path: str, mtime_ns: int, size: int):
    import pandas as pd

    kind = FORMATS[Path(path).suffix.lower()]
    try:
        if kind in ("csv", "tsv"):
            # Everything as text: labels keep their spelling ("01" stays "01"), "NA" stays a word, not a gap.
            frame = pd.read_csv(path, sep="," if kind == "csv" else "\t", dtype=str, keep_default_na=False)
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_parquet(path)
    except Exception as err:  # pandas / pyarrow parser errors of many types
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TaskFileError(f"{path} cannot be read as {kind} ({problem}): fix the file") from None
    return frame


@functools.lru_cache(maxsize=8)
def _hub_frame(name: str, config: str, split: str):
    import datasets

    where = f"{name}/{config}:{split}" if config else f"{name}:{split}"
    try:
        dataset = datasets.load_dataset(name, config or None, split=split)
    except Exception as err:  # the hub raises many types
        raise TaskFileError(f"could not load {where} from the Hugging Face hub ({type(err).__name__}): with no "
                            "network, export it to files and use `files`") from None
    return dataset.to_pandas(), where


def _check_columns(spec: FileTaskSpec, frame, where: str, labelled: bool) -> None:
    needed = [*spec.text_columns, *spec.group_columns, *([spec.label_column] if labelled else [])]
    for column in needed:
        if column not in frame.columns:
            raise TaskFileError(f"{where} has no column {column!r} (columns: {', '.join(map(str, frame.columns))}): "
                                f"fix the column name in {spec.task_file}")
    if len(frame) == 0:
        raise TaskFileError(f"{where} has no rows: add examples, or remove that split from {spec.task_file}")


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def label_text(value: Any) -> str:
    """A label as text, spelled the same whichever format held it (``1``, ``1.0`` and ``"1"`` are ``"1"``)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value.item() if hasattr(value, "item") else value)


def _label_values(given: Any, spec: FileTaskSpec, train, where: str) -> tuple[str, ...]:
    if spec.kind == "regression":
        if given:
            raise TaskFileError(f"{spec.task_file}: label_values is for classification: remove it (type regression)")
        return ()
    found = sorted({label_text(v) for v in train[spec.label_column] if not _missing(v)})
    if given is None:
        values = tuple(found)
    else:
        values = tuple(label_text(v) for v in given) if isinstance(given, list) else ()
        if not values or len(set(values)) != len(values):
            raise TaskFileError(f"{spec.task_file}: label_values must list each class once, e.g. [negative, positive]")
    if len(values) < 2:
        raise TaskFileError(f"{where}: column {spec.label_column!r} holds {len(values)} label value(s) "
                            f"{list(values)}: a classification task needs at least two classes in train")
    return values


def _metrics(raw: dict[str, Any], path: str, kind: str, label_values: tuple[str, ...]) -> dict[str, Any]:
    default = DEFAULT_METRICS["regression" if kind == "regression" else
                              "binary" if len(label_values) == 2 else "multiclass"]
    metrics = tuple(_column_list(raw.get("metrics") or list(default), path, "metrics"))
    allowed = TYPE_METRICS[kind] if len(label_values) <= 2 else ("accuracy", "macro_f1", "mcc")
    odd = [m for m in metrics if m not in allowed]
    if odd:
        raise TaskFileError(f"{path}: metric(s) {odd} do not apply to this {kind} task: choose from "
                            f"{', '.join(allowed)}")
    headline = str(raw.get("headline") or metrics[0])
    if headline not in metrics:
        raise TaskFileError(f"{path}: headline {headline!r} is not among metrics {list(metrics)}: add it there")
    return {"metrics": metrics, "headline": headline}


def _rows(spec: FileTaskSpec, frame, where: str, labelled: bool) -> list[dict[str, Any]]:
    """Rows as the ``pair`` formulation reads them (``text_a``, ``text_b``, ``label``), plus their group keys."""
    has_label = spec.label_column in frame.columns
    _check_columns(spec, frame, where, labelled)
    column = spec.label_column
    rows = []
    for number, record in enumerate(frame.to_dict("records"), start=1):
        texts = ["" if _missing(record[c]) else str(record[c]) for c in spec.text_columns]
        label = record[column] if has_label else None
        if _missing(label):
            if labelled:
                raise TaskFileError(f"{where} row {number}: column {column!r} is empty: give every {where} row a "
                                    "label (or drop the row)")
            label = None
        elif spec.kind == "regression":
            label = _number(label, where, number, column)
        else:
            label = label_text(label)
            if label not in spec.label_values:
                raise TaskFileError(
                    f"{where} row {number}: label {label!r} in column {column!r} is not one of the train labels "
                    f"{list(spec.label_values)}: fix the row, or list it in label_values of {spec.task_file}")
        keys = [(c, label_text(record[c])) for c in spec.group_columns if not _missing(record[c])]
        rows.append({"text_a": texts[0], "text_b": texts[1] if len(texts) > 1 else None, "label": label,
                     "group_keys": keys})
    return rows


def _number(value: Any, where: str, number: int, column: str) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        score = math.nan
    if math.isnan(score) or math.isinf(score):
        raise TaskFileError(f"{where} row {number}: regression label {value!r} in column {column!r} is not a number: "
                            "fix the row (or use type classification)")
    return score


__all__ = ["FileTaskSpec", "TaskFileError", "check_protocol", "file_rows", "find_task", "is_task_file", "label_text",
           "load_task_file", "sweep_tasks"]
