"""Where a relative path points: the directory the command started in, whatever the working directory is later.

Every path a user passes (``PET_DATA_DIR``, ``--data.init_args.data_dir``, ``--config`` files, ``--ckpt_path``,
``--trainer.default_root_dir``, a local backbone folder, a sweep's files, ``out``, ``storage_path`` and
``reuse_from``) goes through :func:`from_start` once, where the library first reads it. A later change of directory
(a test, a callback, a Ray worker that starts elsewhere) then cannot make it point somewhere else, and what is handed
to another process is already absolute.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "PET_DATA_DIR"
# Path-valued environment variables made absolute at import, so that child processes (Ray workers, DDP ranks,
# subprocesses started in another folder) inherit a path that means the same folder.
PATH_ENV_VARS = (DATA_DIR_ENV,)

# The directory the command started in: the package is imported before any of its code can change directory. Read
# it through start_dir() (a test may set it, to run as a command started elsewhere).
START_DIR = Path.cwd()


def start_dir() -> Path:
    """The directory the command started in: what every relative path the user passes is read against."""
    return START_DIR


def from_start(path: str | os.PathLike) -> str:
    """``path`` as an absolute path, a relative one read against :data:`START_DIR`; ``~`` is expanded and URIs
    (``s3://bucket/x``) are returned unchanged. The path is not normalised (symbolic links stay as given)."""
    text = os.fspath(path)
    if "://" in text:
        return text
    expanded = Path(text).expanduser()
    return str(expanded if expanded.is_absolute() else start_dir() / expanded)


def pin_environment(names: tuple[str, ...] = PATH_ENV_VARS) -> None:
    """Rewrite each set, relative path variable of ``names`` in ``os.environ`` as :func:`from_start` reads it."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            os.environ[name] = from_start(value)


pin_environment()

__all__ = ["DATA_DIR_ENV", "PATH_ENV_VARS", "START_DIR", "from_start", "pin_environment", "start_dir"]
