"""Per-segment operations on label maps (vectorised with ``np.bincount``).

Shapes: ``labels`` / ``segments`` are ``H×W``; ``ids`` is ``(Q,)`` segment ids > 0.
"""

from __future__ import annotations

import functools

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


def label_histograms(
    labels: np.ndarray, segments: np.ndarray, ids: np.ndarray, *, rows: np.ndarray | None = None
) -> np.ndarray:
    """``(Q, 256)`` int64: how many pixels of each segment in ``ids`` carry each label value.

    ``rows``: ``id_lookup(segments, ids)`` when the caller has it already.
    """
    ids = np.asarray(ids, dtype=np.int64)
    row = id_lookup(segments, ids) if rows is None else rows
    keep = row >= 0
    flat = row[keep] * NUM_LABEL_VALUES + labels.ravel()[keep].astype(np.int64)
    hist = np.bincount(flat, minlength=ids.size * NUM_LABEL_VALUES)
    return hist.reshape(ids.size, NUM_LABEL_VALUES)


def majority_labels(
    labels: np.ndarray, segments: np.ndarray, ids: np.ndarray, *, rows: np.ndarray | None = None
) -> np.ndarray:
    """``(Q,)`` uint8: the most frequent label value (255 included) of each segment; ties → smallest."""
    histograms = label_histograms(labels, segments, ids, rows=rows)
    return np.asarray(histograms.argmax(axis=1), dtype=np.uint8)


def paint_segments(
    labels: np.ndarray,
    segments: np.ndarray,
    ids: np.ndarray,
    values: np.ndarray,
    *,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of ``labels`` where every pixel of segment ``ids[q]`` is set to ``values[q]``.

    ``rows``: ``id_lookup(segments, ids)`` when the caller has it already.
    """
    ids = np.asarray(ids, dtype=np.int64)
    values = np.asarray(values)
    if ids.shape != values.shape:
        raise ValueError(f"ids {ids.shape} and values {values.shape} differ in shape")
    if ids.size == 0:
        return labels.copy()
    row = (id_lookup(segments, ids) if rows is None else rows).reshape(labels.shape)
    painted = np.asarray(values, dtype=np.uint8)[np.maximum(row, 0)]
    return np.where(row >= 0, painted, labels).astype(np.uint8)


DENSE_PAIR_LIMIT = 1 << 22
"""Up to this many (segment, cell) pairs, pair counts use one dense ``np.bincount``
(32 MB of int64); above it, a sort (``np.unique``)."""


@functools.lru_cache(maxsize=16)
def _cell_map(height: int, width: int, fh: int, fw: int) -> np.ndarray:
    """``(H·W,)`` int64: the index of the ``fh×fw`` grid cell each pixel falls in."""
    ys = np.arange(height, dtype=np.int64) * fh // height
    xs = np.arange(width, dtype=np.int64) * fw // width
    cells = (ys[:, None] * fw + xs[None, :]).ravel()
    cells.flags.writeable = False
    return cells


def pool_features(
    segments: np.ndarray, ids: np.ndarray, features: list[np.ndarray] | tuple[np.ndarray, ...]
) -> np.ndarray:
    """``(Q, ΣC_i)`` float32: each segment's mean of the feature maps over its pixels.

    ``features``: maps ``(C_i, h_i, w_i)`` on a coarser grid than ``segments`` (``H×W``);
    each pixel takes the cell it falls in (``y·h_i // H``, ``x·w_i // W``). Segments in
    ``ids`` with no pixel get zeros. Sums are float64: the pixel counts of each
    (segment, cell) pair, in a canonical CSR matrix, times the cells' features,
    accumulated in cell order (the same arithmetic as building the matrix from one
    entry per pixel, without sorting 2·H·W entries).
    """
    from scipy import sparse

    ids = np.asarray(ids, dtype=np.int64)
    height, width = segments.shape
    rows = id_lookup(segments, ids)
    covered = rows >= 0
    row = rows[covered]
    sizes = np.bincount(row, minlength=ids.size).astype(np.float64)
    parts = []
    for array in features:
        channels, fh, fw = array.shape
        cells = fh * fw
        key = row * cells + _cell_map(height, width, fh, fw)[covered]
        if ids.size * cells <= DENSE_PAIR_LIMIT:
            dense = np.bincount(key, minlength=ids.size * cells)
            pairs = np.flatnonzero(dense)
            counts = dense[pairs]
        else:
            pairs, counts = np.unique(key, return_counts=True)
        indptr = np.zeros(ids.size + 1, dtype=np.int64)
        np.cumsum(np.bincount(pairs // cells, minlength=ids.size), out=indptr[1:])
        matrix = sparse.csr_matrix(
            (counts.astype(np.float64), pairs % cells, indptr), shape=(ids.size, cells)
        )
        parts.append(np.asarray(matrix @ array.reshape(channels, -1).T))
    if not parts:
        return np.zeros((ids.size, 0), dtype=np.float32)
    pooled = np.hstack(parts) / np.maximum(sizes, 1.0)[:, None]
    return pooled.astype(np.float32)


REGION_MAX_SIDE = 120
"""Regions of equal label are cut on a grid of this many pixels (large stuff → several)."""


def label_regions(labels: np.ndarray, *, max_side: int = REGION_MAX_SIDE) -> np.ndarray:
    """``H×W`` int32 segments from ``H×W`` uint8 labels: connected regions of one label
    (8-connected), cut on a ``max_side`` grid; 255 pixels are in no segment (0).

    For initial labels brought without segments: every segment is one class.
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be H×W, got shape {labels.shape}")
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    height, width = labels.shape
    cells_x = -(-width // max_side)
    cell = (np.arange(height)[:, None] // max_side) * cells_x + (
        np.arange(width)[None, :] // max_side
    )
    cells = int(cell.max(initial=0)) + 1
    key = np.zeros(labels.shape, dtype=np.int64)
    offset = 0
    structure = np.ones((3, 3), dtype=bool)
    for value in np.unique(labels):
        if value == 255:
            continue
        components, count = ndimage.label(labels == value, structure=structure)
        inside = components > 0
        key[inside] = offset + (components[inside].astype(np.int64) - 1) * cells + cell[inside] + 1
        offset += count * cells
    _, inverse = np.unique(key, return_inverse=True)
    out = inverse.reshape(labels.shape).astype(np.int32)
    return out if (key == 0).any() else out + 1
