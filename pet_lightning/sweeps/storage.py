"""Where a sweep keeps what must outlive the machine that trained it: ``storage_path``.

Ray keeps trial state (each run's epoch checkpoints) under ``<storage>/<experiment>/``. When the storage is not the
sweep's ``out`` folder (a bucket URI such as ``s3://``, ``gs://``, ``file://``, or a shared folder on a cluster whose
``out`` is a node's own disk), each finished run's folder is also copied to ``<storage>/runs/<run_id>/``: its record,
config, per-example predictions, run log and, with ``keep_checkpoints``, the kept model. The layout under
``runs/`` is the ``out`` folder's, so the paths a record names relative to ``out`` resolve against the storage too,
and the record says where its folder went (``stored_at``). The driver fetches what a report reads (everything but
checkpoints) back into ``out`` when the run trained on another node's disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pet_lightning.paths import from_start
from pet_lightning.sweeps.files import SweepError
from pet_lightning.sweeps.plan import SweepConfig
from pet_lightning.sweeps.records import RECORD_FILE

# A run's resume state is Ray's (under the experiment), not part of the stored run folder.
_NOT_STORED = ("resume", "tune_resume", "epoch.ckpt")
_CHECKPOINTS = "checkpoints"
STORAGE_MARK = ".pet-lightning-storage"


def storage_root(sweep: SweepConfig) -> str:
    """Where Ray keeps trial state: a local folder, or a URI (``s3://``, ``file://``...) handed to Ray as it is."""
    return from_start(sweep.storage_path or sweep.out)


def storage_join(storage: str, *parts: str) -> str:
    """``storage`` with path ``parts`` appended: a URI keeps its query (``s3://b/sweeps?endpoint_override=...``)
    at the end, where pyarrow reads it."""
    if "://" not in storage:
        return str(Path(storage, *parts))
    base, mark, query = storage.partition("?")
    return f"{base.rstrip('/')}/{'/'.join(parts)}{mark}{query}"


def storage_filesystem(storage: str):
    """The pyarrow file system and path of ``storage``, resolved as Ray resolves it (``FileSystem.from_uri``)."""
    import pyarrow.fs

    if "://" not in storage:
        return pyarrow.fs.LocalFileSystem(), storage
    return pyarrow.fs.FileSystem.from_uri(storage)


def check_storage(storage: str) -> None:
    """Fail in one line, before any trial starts, where Ray could not keep trial state: a URI scheme no file system
    answers to, a bucket that cannot be reached, a folder that cannot be created."""
    import pyarrow

    scheme = storage.split("://", 1)[0] if "://" in storage else None
    try:
        filesystem, path = storage_filesystem(storage)
        filesystem.create_dir(path, recursive=True)
    except (pyarrow.ArrowException, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if scheme is not None and "nrecognized" in reason:
            raise SweepError(f"storage_path {storage}: no file system for {scheme}:// ({reason}): use a folder every "
                             "node sees, or a file://, s3://, gs://, abfs:// or hdfs:// URI") from None
        where = "the folder" if scheme in (None, "file") else "the bucket (and its credentials in the environment)"
        raise SweepError(f"storage_path {storage}: cannot write there ({reason}): check that {where} exists and "
                         "this machine can write to it, or set storage_path to a folder every node sees") from None


def mark_storage(storage: str) -> str:
    """Write a mark of this driver into ``storage`` (the experiment's folder in it) and return it: every trial
    checks that it sees the same mark (:func:`check_storage_seen`), so a folder that is the driver's alone fails
    in one line instead of each node keeping trial state where the others never look."""
    import uuid

    mark = uuid.uuid4().hex
    filesystem, path = storage_filesystem(storage)
    filesystem.create_dir(path, recursive=True)
    with filesystem.open_output_stream(f"{path.rstrip('/')}/{STORAGE_MARK}") as stream:
        stream.write(mark.encode())
    return mark


def check_storage_seen(storage: str, mark: str, node: str) -> None:
    """Raise a one-line :class:`SweepError` where this node does not see the mark the driver wrote in ``storage``."""
    import pyarrow

    try:
        filesystem, path = storage_filesystem(storage)
        with filesystem.open_input_stream(f"{path.rstrip('/')}/{STORAGE_MARK}") as stream:
            seen = stream.read().decode()
    except (pyarrow.ArrowException, OSError, UnicodeDecodeError):
        seen = None
    if seen != mark:
        found = "is missing" if seen is None else "holds another driver's mark"
        raise SweepError(f"storage_path {storage} is not the place the driver wrote to, seen from node {node} (its "
                         f"{STORAGE_MARK} {found}): set storage_path to a folder every node sees, or a bucket")


def stored_run_folder(sweep: SweepConfig, run_id: str) -> str | None:
    """Where a finished run's folder is copied (``<storage>/runs/<run_id>``), or None when the storage is ``out``."""
    storage = storage_root(sweep)
    if "://" not in storage and Path(storage).resolve() == Path(sweep.out).resolve():
        return None
    return storage_join(storage, "runs", run_id)


def _stored_files(run_dir: Path, with_checkpoints: bool) -> list[Path]:
    files = []
    for path in sorted(run_dir.rglob("*")):
        parts = path.relative_to(run_dir).parts
        if not path.is_file() or parts[0] in _NOT_STORED or (parts[0] == _CHECKPOINTS and not with_checkpoints):
            continue
        files.append(path)
    return files


def store_run_folder(run_dir: Path, target: str, names: list[str] | None = None) -> None:
    """Copy ``run_dir`` (resume state left out; only ``names`` if given) to ``target``, a folder or URI; one-line
    error if it cannot."""
    import pyarrow
    import pyarrow.fs

    try:
        filesystem, root = storage_filesystem(target)
        local = pyarrow.fs.LocalFileSystem()
        files = [run_dir / name for name in names] if names else _stored_files(run_dir, with_checkpoints=True)
        for path in files:
            destination = f"{root}/{path.relative_to(run_dir).as_posix()}"
            filesystem.create_dir(destination.rsplit("/", 1)[0], recursive=True)
            pyarrow.fs.copy_files(str(path), destination, source_filesystem=local, destination_filesystem=filesystem)
    except (pyarrow.ArrowException, OSError) as err:
        raise SweepError(f"could not copy the finished run folder {run_dir} to {target} ({str(err).strip()[:200]}): "
                         "check that the storage_path is writable from every node") from None


def fetch_run_folder(record: dict[str, Any], run_dir: Path) -> bool:
    """Copy what a report reads (all but checkpoints) from the record's ``stored_at`` into ``run_dir`` where it is
    missing there (the run trained on another node's disk). True if anything was fetched."""
    import pyarrow
    import pyarrow.fs

    source = record.get("stored_at")
    if not source or (run_dir / RECORD_FILE).is_file():
        return False
    try:
        filesystem, root = storage_filesystem(source)
        found = filesystem.get_file_info(pyarrow.fs.FileSelector(root, recursive=True))
        local = pyarrow.fs.LocalFileSystem()
        for info in found:
            relative = info.path[len(root.rstrip("/")) + 1:]
            if info.type != pyarrow.fs.FileType.File or relative.split("/", 1)[0] == _CHECKPOINTS:
                continue
            (run_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            pyarrow.fs.copy_files(info.path, str(run_dir / relative), source_filesystem=filesystem,
                                  destination_filesystem=local)
    except (pyarrow.ArrowException, OSError) as err:
        raise SweepError(f"run {record.get('run_id')}: could not fetch its folder from {source} "
                         f"({str(err).strip()[:200]}): check that this machine can read the storage_path") from None
    return True
