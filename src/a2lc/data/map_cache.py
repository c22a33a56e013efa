"""Decoded maps held in memory, so that a map file is decoded once per process.

A round reads each image's segment map, initial labels and ground truth in
several steps (scoring, the simulated annotator, closing, training, data mIoU);
these files do not change during a run, and decoding a PNG costs more than
copying the array. :class:`MapCache` keeps what it decoded up to a byte budget
(first come, first held: a pass over a pool larger than the budget keeps the
same images every time instead of evicting each one just before it is needed).

A file replaced on disk (another process imported new labels: a new inode, size
or modification time) is decoded again. Callers get a copy, so nothing they do to
an array reaches the cache.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

Decoder = Callable[[Path], np.ndarray]


class MapCache:
    """``get(path, decode, kind=)``: ``decode(path)``'s result, from memory after the first call.

    ``kind`` names the decoding (a file read as a label map through one class table is
    another entry than the same file read through another). ``budget``: bytes the held
    arrays may take (0 holds nothing). Integer maps whose values fit are held as uint8
    or uint16 and returned in their decoded dtype.
    """

    def __init__(self, *, budget: int) -> None:
        self.budget = max(0, int(budget))
        self.held_bytes = 0
        self._held: dict[tuple[Path, str], tuple[tuple[int, int, int], np.ndarray, np.dtype]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path, decode: Decoder, *, kind: str = "") -> np.ndarray:
        path = Path(path)
        key = (path, kind)
        try:
            stat = path.stat()
        except OSError:
            return decode(path)  # the decoder names the file and what is wrong
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            held = self._held.get(key)
        if held is not None and held[0] == signature:
            return held[1].astype(held[2])  # a copy, in the decoded dtype
        array = decode(path)
        if self.budget:
            self._hold(key, signature, array)
        return array

    def _hold(
        self, key: tuple[Path, str], signature: tuple[int, int, int], array: np.ndarray
    ) -> None:
        stored = _compact(array)
        with self._lock:
            previous = self._held.pop(key, None)
            if previous is not None:
                self.held_bytes -= previous[1].nbytes
            if self.held_bytes + stored.nbytes <= self.budget:
                stored.flags.writeable = False
                self._held[key] = (signature, stored, array.dtype)
                self.held_bytes += stored.nbytes

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
            self.held_bytes = 0


def _compact(array: np.ndarray) -> np.ndarray:
    """The smallest unsigned dtype that holds an integer array's values (a copy)."""
    if array.dtype.kind in "iu" and array.size:
        low, high = int(array.min()), int(array.max())
        if low >= 0:
            for dtype in (np.uint8, np.uint16):
                if high <= np.iinfo(dtype).max:
                    return array.astype(dtype)
    return array.copy()
