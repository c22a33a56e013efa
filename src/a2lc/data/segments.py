"""Per-segment operations on label maps (vectorised with ``np.bincount``).

Shapes: ``labels`` / ``segments`` are ``H×W``; ``ids`` is ``(Q,)`` segment ids > 0.
"""

from __future__ import annotations

import numpy as np

NUM_LABEL_VALUES = 256
"""uint8 label values, 255 (ignore) included."""


def segment_sizes(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the segments present (ascending, 0 excluded) and their pixel counts."""
    counts = np.bincount(np.asarray(segments).ravel()) if segments.size else np.zeros(1, np.int64)
    counts[0] = 0
    ids = np.flatnonzero(counts)
    return ids.astype(np.int64), counts[ids].astype(np.int64)


def id_lookup(segments: np.ndarray, ids: np.ndarray, *, missing: int = -1) -> np.ndarray:
    """Per pixel (flattened), the position of its segment in ``ids``, or ``missing``."""
    ids = np.asarray(ids, dtype=np.int64)
    top = int(max(segments.max(initial=0), ids.max(initial=0)))
    lookup = np.full(top + 1, missing, dtype=np.int64)
    lookup[ids] = np.arange(ids.size)
    return np.asarray(lookup[np.asarray(segments).ravel()])


def label_histograms(labels: np.ndarray, segments: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``(Q, 256)`` int64: how many pixels of each segment in ``ids`` carry each label value."""
    ids = np.asarray(ids, dtype=np.int64)
    row = id_lookup(segments, ids)
    keep = row >= 0
    flat = row[keep] * NUM_LABEL_VALUES + labels.ravel()[keep].astype(np.int64)
    hist = np.bincount(flat, minlength=ids.size * NUM_LABEL_VALUES)
    return hist.reshape(ids.size, NUM_LABEL_VALUES)


def majority_labels(labels: np.ndarray, segments: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``(Q,)`` uint8: the most frequent label value (255 included) of each segment; ties → smallest."""
    return np.asarray(label_histograms(labels, segments, ids).argmax(axis=1), dtype=np.uint8)


def paint_segments(
    labels: np.ndarray, segments: np.ndarray, ids: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """A copy of ``labels`` where every pixel of segment ``ids[q]`` is set to ``values[q]``."""
    ids = np.asarray(ids, dtype=np.int64)
    values = np.asarray(values)
    if ids.shape != values.shape:
        raise ValueError(f"ids {ids.shape} and values {values.shape} differ in shape")
    if ids.size == 0:
        return labels.copy()
    row = id_lookup(segments, ids).reshape(labels.shape)
    painted = np.asarray(values, dtype=np.uint8)[np.maximum(row, 0)]
    return np.where(row >= 0, painted, labels).astype(np.uint8)
