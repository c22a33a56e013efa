"""Painted answers: a person splits a mixed segment by painting parts of it another class.

A painted answer is an ``H×W`` int16 map over the whole image: ``-1`` where nothing
was painted, else the class the pixel has (``255``: void). Only pixels of the
answered segment may be painted. The unpainted pixels of the segment keep the
answer's label (or the current label when the answer keeps it). Each painting is
one PNG written before the answer is recorded (16-bit, value ``class + 1``, 0 =
unpainted) under ``paints/``, with a name no other painting has, so a recorded
answer always has its file and an undone one leaves only an unreferenced file.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np

from a2lc.data.maps import read_segment_map, write_segment_map
from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import WorkspaceError

PAINTS_DIR = "paints"
UNPAINTED = -1


def check_paint(paint: object, *, segment: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    """``paint`` as ``H×W`` int16 if it is a valid painting of the ``H×W`` bool ``segment``.

    Raises :class:`WorkspaceError` naming ``name`` (the answer) and what is wrong.
    """
    if not isinstance(paint, np.ndarray) or paint.dtype.kind not in "iu":
        raise WorkspaceError(f"{name}: a painting must be an integer array")
    if paint.shape != segment.shape:
        raise WorkspaceError(
            f"{name}: the painting is {paint.shape}, the image {segment.shape}; they must match"
        )
    values = paint.astype(np.int64)
    valid = (
        (values == UNPAINTED) | ((values >= 0) & (values < num_classes)) | (values == IGNORE_INDEX)
    )
    if not valid.all():
        raise WorkspaceError(
            f"{name}: painted values must be classes 0..{num_classes - 1}, {IGNORE_INDEX} (void) "
            f"or {UNPAINTED} (unpainted)"
        )
    painted = values != UNPAINTED
    if (painted & ~segment).any():
        raise WorkspaceError(
            f"{name}: {int((painted & ~segment).sum())} painted pixels are outside the segment"
        )
    if not painted.any():
        raise WorkspaceError(f"{name}: nothing is painted (answer with a class instead)")
    return values.astype(np.int16)


def apply_paint(labels: np.ndarray, segment: np.ndarray, paint: np.ndarray) -> np.ndarray:
    """``H×W`` labels with the segment's painted pixels set to their painted class."""
    out = labels.copy()
    mask = segment & (paint != UNPAINTED)
    out[mask] = paint[mask].astype(out.dtype)
    return out


def majority(labels: np.ndarray, segment: np.ndarray) -> int:
    """The class most of the segment's labelled pixels have (255 if none is labelled)."""
    inside = labels[segment]
    inside = inside[inside != IGNORE_INDEX]
    if inside.size == 0:
        return IGNORE_INDEX
    return int(np.bincount(inside).argmax())


def store_paint(
    root: Path, round_index: int, image_id: str, segment_id: int, paint: np.ndarray
) -> str:
    """Write the painting atomically; return its path relative to the workspace ``root``."""
    relative = (
        f"{PAINTS_DIR}/round_{round_index:03d}/{image_id}/{segment_id}-{secrets.token_hex(6)}.png"
    )
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = np.where(paint == UNPAINTED, 0, paint.astype(np.int32) + 1)
    write_segment_map(path, stored.astype(np.int32))
    return relative


def read_paint(path: Path, *, shape: tuple[int, int]) -> np.ndarray:
    """A stored painting as ``H×W`` int16 (``-1`` = unpainted)."""
    return (read_segment_map(path, shape=shape) - 1).astype(np.int16)
