"""One writer per workspace: an exclusive ``flock`` on ``W/a2lc.lock``.

The lock belongs to the open file, so the kernel releases it when the process
ends, however it ends: a lock left by a killed process is free for the next
writer at once, and nobody can take a lock that a live process holds. Inside one
process, opening the same workspace again for writing shares the lock (counted).
The lock file also records who holds it (pid, command, time) for the error message.
Readers never take it (``Workspace.open(..., read_only=True)``).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import sys
import threading
from pathlib import Path

from a2lc.errors import WorkspaceError

LOCK_NAME = "a2lc.lock"

_held: dict[Path, tuple[int, int]] = {}  # path → (fd, count) in this process
_guard = threading.Lock()


def acquire(folder: Path) -> Path:
    """Take the workspace's writer lock (or share this process's); raise if another holds it."""
    path = (Path(folder) / LOCK_NAME).resolve()
    with _guard:
        if path in _held:
            fd, count = _held[path]
            _held[path] = (fd, count + 1)
            return path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot lock {folder} for writing ({exc.strerror}); read-only commands "
                "(status, export, report) still work"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(fd)
            os.close(fd)
            if "ls-backend" in holder:
                raise WorkspaceError(
                    f"workspace {folder} is served to Label Studio by `a2lc ls-backend` "
                    f"({holder}): answer the queries in Label Studio (with --label-studio the "
                    "backend runs the rounds itself), or stop it (Ctrl-C) to run them here; "
                    "read-only commands (status, export, report) still work"
                ) from None
            raise WorkspaceError(
                f"workspace {folder} is in use by another a2lc process ({holder}); one writer "
                "at a time: wait for it to finish (read-only commands still work)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(
            fd,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "command": " ".join(sys.argv[:3]),
                    "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                }
            ).encode(),
        )
        _held[path] = (fd, 1)
        return path


def release(path: Path) -> None:
    """Give back one use of the lock taken by :func:`acquire`."""
    with _guard:
        if path not in _held:
            return
        fd, count = _held[path]
        if count > 1:
            _held[path] = (fd, count - 1)
            return
        del _held[path]
        os.close(fd)  # closing the file releases the flock


def _describe(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode() or "{}")
        return f"pid {info.get('pid')}, `{info.get('command')}`, since {info.get('since')}"
    except (OSError, ValueError):
        return "unknown holder"
