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
SUM_TOLERANCE = 1e-3
"""Probabilities of a pixel must sum to 1 within this (softmax in float16/32 rounds)."""


def probability_path(folder: Path, image_id: str) -> Path:
    """The file holding ``image_id``'s probabilities (``.npy`` preferred), or raise if absent."""
    for suffix in SUFFIXES:
        candidate = folder / f"{image_id}{suffix}"
        if candidate.is_file():
            return candidate
    raise DataError(
        Problem(folder / f"{image_id}.npy", "probability map is missing (.npy or .npz)")
    )


def _header(handle: object) -> tuple[tuple[int, ...], np.dtype[np.generic]]:
    version = np.lib.format.read_magic(handle)  # type: ignore[arg-type]
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)  # type: ignore[arg-type]
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)  # type: ignore[arg-type]
    return tuple(int(n) for n in shape), np.dtype(dtype)


def load_probabilities(path: Path, *, num_classes: int, shape: tuple[int, int]) -> np.ndarray:
    """Load a ``C×H×W`` float32 probability map and check it against ``C`` and ``(H, W)``.

    The header is checked before any data is read (a file claiming a huge array
    is refused without allocating it); then every value must be finite and
    non-negative and every pixel's probabilities must sum to 1 (within
    :data:`SUM_TOLERANCE`).
    """
    path = Path(path)
    expected = (num_classes, *shape)

    def check_header(found: tuple[int, ...], dtype: np.dtype[np.generic]) -> None:
        if len(found) != 3 or found != expected:
            raise DataError(Problem(path, f"shape {found} does not match C×H×W = {expected}"))
        if dtype.kind != "f":
            raise DataError(Problem(path, f"probabilities must be floating point, got {dtype}"))

    try:
        if path.suffix == ".npz":
            with np.load(path) as archive:
                keys = list(archive.files)
                key = "probs" if "probs" in keys else keys[0] if len(keys) == 1 else None
                if key is None:
                    raise DataError(Problem(path, f"expected an array named 'probs', found {keys}"))
                with archive.zip.open(f"{key}.npy") as member:
                    check_header(*_header(member))
                array = archive[key]
        else:
            with open(path, "rb") as handle:
                check_header(*_header(handle))
            array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, BadZipFile, KeyError) as exc:
        raise DataError(Problem(path, f"unreadable probability map ({exc})")) from None
    return check_probability_values(np.asarray(array, dtype=np.float32), where=path)


def check_probability_values(probs: np.ndarray, *, where: str | Path) -> np.ndarray:
    """``probs`` (``C×H×W``, floating point) if every value is finite and ≥ 0 and every
    pixel's values sum to 1 within :data:`SUM_TOLERANCE` (so each is in [0, 1 + tol]);
    else :class:`DataError` naming ``where``."""
    if probs.dtype.kind != "f":
        raise DataError(Problem(where, f"probabilities must be floating point, got {probs.dtype}"))
    if not np.isfinite(probs).all():
        raise DataError(Problem(where, "probabilities must be finite (found NaN or inf)"))
    if (probs < 0).any():
        raise DataError(
            Problem(where, f"probabilities must be ≥ 0 (found {float(probs.min()):.3g})")
        )
    worst = float(np.abs(probs.sum(axis=0, dtype=np.float64) - 1.0).max(initial=0.0))
    if worst > SUM_TOLERANCE:
        raise DataError(
            Problem(
                where,
                f"a pixel's probabilities must sum to 1 over the C classes (off by up to "
                f"{worst:.3g}, tolerance {SUM_TOLERANCE:g}); save softmax outputs, not logits",
            )
        )
    return probs
