"""Atomic file writes: write a temporary file beside the target, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy.typing as npt


def _file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 less the umask); mkstemp makes 0o600."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_path(path: Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success rename it onto ``path``.

    A reader sees either the old file or the complete new one, never a partial
    write, even if the process is killed in between. ``mode``: the file's
    permissions (default: as a plain write under the umask would give).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE if mode is None else mode)  # as a plain write would be
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Atomically replace ``path`` with what ``write`` writes to a binary handle."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_arrays(path: Path, **arrays: npt.ArrayLike) -> None:
    """Atomically replace ``path`` with an uncompressed ``.npz`` of ``arrays`` (by name)."""
    import numpy as np  # here, so text writers (the CLI's) do not import numpy

    named: dict[str, Any] = dict(arrays)
    atomic_write(path, lambda handle: np.savez(handle, **named))


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8); ``mode`` as :func:`atomic_path`."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
