"""Saved model probability maps: one ``<image id>.npy`` or ``.npz`` file per image.

Each holds a ``C×H×W`` float array of softmax probabilities (an ``.npz`` holds
it under the key ``probs``, or as its only array).
"""

from __future__ import annotations

from pathlib import Path
from zipfile import BadZipFile

import numpy as np

from a2lc.errors import DataError, Problem

SUFFIXES = (".npy", ".npz")


def probability_path(folder: Path, image_id: str) -> Path:
    """The file holding ``image_id``'s probabilities (``.npy`` preferred), or raise if absent."""
    for suffix in SUFFIXES:
        candidate = folder / f"{image_id}{suffix}"
        if candidate.is_file():
            return candidate
    raise DataError(
        Problem(folder / f"{image_id}.npy", "probability map is missing (.npy or .npz)")
    )


def load_probabilities(path: Path, *, num_classes: int, shape: tuple[int, int]) -> np.ndarray:
    """Load a ``C×H×W`` float32 probability map and check it against ``C`` and ``(H, W)``."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path) as archive:
                keys = list(archive.files)
                key = "probs" if "probs" in keys else keys[0] if len(keys) == 1 else None
                if key is None:
                    raise DataError(Problem(path, f"expected an array named 'probs', found {keys}"))
                array = archive[key]
        else:
            array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, BadZipFile) as exc:
        raise DataError(Problem(path, f"unreadable probability map ({exc})")) from None
    expected = (num_classes, *shape)
    if array.ndim != 3 or array.shape != expected:
        raise DataError(Problem(path, f"shape {array.shape} does not match C×H×W = {expected}"))
    if array.dtype.kind != "f":
        raise DataError(Problem(path, f"probabilities must be floating point, got {array.dtype}"))
    return np.asarray(array, dtype=np.float32)
