"""Run many ``cli.py`` commands as separate processes without paying Python's start-up each time.

``python -m tests.fault_runner`` imports the stack once, then for each JSON line on stdin
(``{"args": [...], "env": {...}, "log": "path"}``) forks a child that runs ``pet_lightning.cli.main(args)`` with
that environment, its output going to ``log``, and answers one JSON line: ``{"returncode": ..., "signal": ...,
"wall_s": ...}``. A child is a real process: the faults of :mod:`tests.helpers.faults` (loaded when the server is
started with :func:`tests.helpers.faults.plugin_env`) SIGKILL it for real (``signal`` 9). The parent has run no
torch computation before forking (and runs with one thread), so the children start clean.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _child(args: list[str], env: dict[str, str], log: str) -> None:
    os.environ.update(env)
    handle = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(handle, 1)
    os.dup2(handle, 2)
    code = 1
    try:
        from pet_lightning.cli import main

        code = main(args)
    except SystemExit as stop:  # SIGTERMException (preemption) is a SystemExit
        code = stop.code if isinstance(stop.code, int) else 0
    except BaseException:  # noqa: BLE001 - report any crash through the exit code and the log
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    import lightning  # noqa: F401 - imported once here, inherited by every child
    import peft  # noqa: F401
    import transformers  # noqa: F401

    import pet_lightning.cli  # noqa: F401
    import pet_lightning.lightning_cli  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(request["args"], request.get("env", {}), request["log"])
        _, status = os.waitpid(pid, 0)
        answer = {
            "returncode": os.waitstatus_to_exitcode(status),
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "wall_s": round(time.perf_counter() - start, 2),
        }
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    serve()
