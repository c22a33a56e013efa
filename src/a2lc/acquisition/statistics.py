"""Everything a round needs from one image's probabilities, in one sweep.

:func:`segment_statistics` reads ``probs`` once and returns, per segment, the
confidence-in-label score split by the class ``y_x`` it is weighted with (so
ABC's class weight, ALC's unit weight or any other weight is applied
afterwards: ``label_scores @ w``) and the segment's mean probability vector
(the LCM feature). The numba kernel is the default; ``backend="numpy"`` is the
plain reference it is tested against.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from a2lc.data.sample import IGNORE_INDEX
from a2lc.data.segments import segment_sizes

Backend = Literal["auto", "numba", "numpy"]

MAX_FUSED_ELEMENTS = 1 << 23
"""Largest ``M·C·C`` (segments × classes²) the numba kernel accumulates (2 × 64 MB of
float64); images with more use the numpy backend."""


class SegmentStatistics(NamedTuple):
    """Per-segment results of one image, rows in ascending segment id.

    * ``ids``: ``(M,)`` int32 segment ids (0 excluded);
    * ``sizes``: ``(M,)`` int64 pixels per segment;
    * ``label_scores``: ``(M, C)`` float64, ``[m, y] = Σ_{x∈m, y_x=y} cos(P_x, rep_m) ·
      (1 − P[y, x])`` with ``y_x`` the label (the prediction where it is 255); the
      ABC score with class weight ``w`` is ``label_scores @ w``;
    * ``features``: ``(M, C)`` float32 mean probability vector of each segment;
    * ``representative``: ``(M, C)`` float64 unit vector along ``rep_m`` (0 if none).
    """

    ids: np.ndarray
    sizes: np.ndarray
    label_scores: np.ndarray
    features: np.ndarray
    representative: np.ndarray

    def scores(self, class_weight: np.ndarray | None = None) -> np.ndarray:
        """``(M,)`` float64 scores with ``class_weight`` ``(C,)`` (None: weight 1, ALC)."""
        if class_weight is None:
            return np.asarray(self.label_scores.sum(axis=1))
        return np.asarray(self.label_scores @ np.asarray(class_weight, dtype=np.float64))


def check_inputs(probs: np.ndarray, labels: np.ndarray, segments: np.ndarray) -> None:
    """Raise ``ValueError`` naming the shapes when the three arrays do not fit together."""
    if probs.ndim != 3:
        raise ValueError(f"probs must be C×H×W, got shape {probs.shape}")
    if probs.dtype.kind != "f":
        raise ValueError(f"probs must be floating point, got {probs.dtype}")
    if labels.shape != probs.shape[1:] or segments.shape != probs.shape[1:]:
        raise ValueError(
            f"probs {probs.shape} (C×H×W), labels {labels.shape} and segments "
            f"{segments.shape} must share H×W"
        )
    if labels.dtype != np.uint8:
        raise ValueError(f"labels must be uint8, got {labels.dtype}")
    if segments.dtype.kind not in "iu":
        raise ValueError(f"segments must be integers, got {segments.dtype}")
    num_classes = probs.shape[0]
    if num_classes < IGNORE_INDEX and bool(
        np.any((labels >= num_classes) & (labels != IGNORE_INDEX))
    ):
        raise ValueError(f"labels hold class ids >= C = {num_classes} other than {IGNORE_INDEX}")


def segment_statistics(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray, *, backend: Backend = "auto"
) -> SegmentStatistics:
    """Score parts and LCM features of every segment of one image (see :class:`SegmentStatistics`).

    ``probs``: ``C×H×W`` float softmax probabilities; ``labels``: ``H×W`` uint8
    (255 = ignore); ``segments``: ``H×W`` int (0 = no segment). The dominant
    class of a segment is its most frequent predicted class (ties → smallest id)
    and ``rep_m`` the mean probability vector over its pixels predicting it.
    """
    check_inputs(probs, labels, segments)
    if backend == "auto":
        backend = "numba" if _fits_kernel(segments, probs.shape[0]) else "numpy"
    if backend == "numba":
        return _statistics_numba(probs, labels, segments)
    if backend == "numpy":
        return _statistics_numpy(probs, labels, segments)
    raise ValueError(f"unknown backend {backend!r}; valid: auto, numba, numpy")


def _fits_kernel(segments: np.ndarray, num_classes: int) -> bool:
    """Whether the kernel's ``M·C·C`` sums stay within :data:`MAX_FUSED_ELEMENTS`."""
    limit = MAX_FUSED_ELEMENTS // (num_classes * num_classes)
    if int(segments.max(initial=0)) <= limit:
        return True
    return int(np.count_nonzero(np.bincount(segments.ravel())[1:])) <= limit


def _finish(
    ids: np.ndarray, acc_a: np.ndarray, acc_r: np.ndarray, hist: np.ndarray
) -> SegmentStatistics:
    rows = np.arange(ids.size)
    sizes = hist.sum(axis=1)
    rep = acc_r[rows, hist.argmax(axis=1)]  # argmax: ties → smallest class id
    norm = np.linalg.norm(rep, axis=1)
    dot = np.einsum("myc,mc->my", acc_a, rep)
    label_scores = np.divide(dot, norm[:, None], out=np.zeros_like(dot), where=norm[:, None] > 0)
    sums = acc_r.sum(axis=1)
    features = (sums / np.maximum(sizes, 1)[:, None]).astype(np.float32)
    unit = np.divide(rep, norm[:, None], out=np.zeros_like(rep), where=norm[:, None] > 0)
    return SegmentStatistics(ids, sizes.astype(np.int64), label_scores, features, unit)


def _statistics_numba(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray
) -> SegmentStatistics:
    from a2lc.acquisition._kernels import accumulate, segment_rows

    num_classes = probs.shape[0]
    flat_probs = np.ascontiguousarray(probs.reshape(num_classes, -1), dtype=np.float32)
    flat_segments = np.ascontiguousarray(segments.ravel(), dtype=np.int32)
    ids, index = segment_rows(flat_segments)
    acc_a = np.zeros((ids.size, num_classes, num_classes), dtype=np.float64)
    acc_r = np.zeros((ids.size, num_classes, num_classes), dtype=np.float64)
    hist = np.zeros((ids.size, num_classes), dtype=np.int64)
    accumulate(
        flat_probs,
        np.ascontiguousarray(labels.ravel()),
        flat_segments,
        index,
        IGNORE_INDEX,
        acc_a,
        acc_r,
        hist,
    )
    return _finish(ids, acc_a, acc_r, hist)


def _statistics_numpy(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray
) -> SegmentStatistics:
    """The straightforward reference: per-pixel arrays and bincounts (about 8× probs of memory)."""
    num_classes = probs.shape[0]
    flat = probs.reshape(num_classes, -1)
    seg = segments.ravel().astype(np.int64)
    ids, sizes = segment_sizes(seg)
    index = np.full(int(ids.max(initial=0)) + 1, -1, dtype=np.int64)
    index[ids] = np.arange(ids.size)
    covered = seg > 0
    p = flat[:, covered].astype(np.float64)
    row = index[seg[covered]]
    pred = p.argmax(axis=0)
    hist = np.bincount(row * num_classes + pred, minlength=ids.size * num_classes)
    hist = hist.reshape(ids.size, num_classes)
    dominant = hist.argmax(axis=1)
    on_dominant = pred == dominant[row]
    sums = np.stack(
        [np.bincount(row, weights=p[c], minlength=ids.size) for c in range(num_classes)], axis=1
    )
    rep = np.stack(
        [
            np.bincount(row[on_dominant], weights=p[c, on_dominant], minlength=ids.size)
            for c in range(num_classes)
        ],
        axis=1,
    )
    label = labels.ravel()[covered]
    target = np.where(label == IGNORE_INDEX, pred, label).astype(np.int64)
    confidence = 1.0 - p[target, np.arange(p.shape[1])]
    pixel_rep = rep[row]
    dot = np.einsum("cn,nc->n", p, pixel_rep)
    norms = np.linalg.norm(p, axis=0) * np.linalg.norm(pixel_rep, axis=1)
    cosine = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    label_scores = np.bincount(
        row * num_classes + target,
        weights=cosine * confidence,
        minlength=ids.size * num_classes,
    ).reshape(ids.size, num_classes)
    features = (sums / np.maximum(sizes, 1)[:, None]).astype(np.float32)
    norm = np.linalg.norm(rep, axis=1, keepdims=True)
    unit = np.divide(rep, norm, out=np.zeros_like(rep), where=norm > 0)
    return SegmentStatistics(
        ids.astype(np.int32), sizes.astype(np.int64), label_scores, features, unit
    )


def other_class_mass(
    probs: np.ndarray,
    labels: np.ndarray,
    segments: np.ndarray,
    stats: SegmentStatistics,
    *,
    backend: Backend = "auto",
) -> np.ndarray:
    """``(M, C)`` float64: ``[m, t] = Σ_{x∈m, y_x≠t} cos(P_x, rep_m) · P[t, x]``.

    The cosine-weighted probability that segment m's pixels truly belong to class
    t when their label says otherwise (the expected-IoU-gain acquisition weighs it
    by ``1 / U_t``). A second sweep over ``probs``, since it needs ``rep_m`` from
    :func:`segment_statistics` (``stats``) first.
    """
    check_inputs(probs, labels, segments)
    num_classes = probs.shape[0]
    if backend == "auto":
        backend = "numba" if _fits_kernel(segments, num_classes) else "numpy"
    if backend == "numba":
        from a2lc.acquisition._kernels import accumulate_cosine_mass, segment_rows

        flat_probs = np.ascontiguousarray(probs.reshape(num_classes, -1), dtype=np.float32)
        flat_segments = np.ascontiguousarray(segments.ravel(), dtype=np.int32)
        ids, index = segment_rows(flat_segments)
        acc_q = np.zeros((ids.size, num_classes, num_classes), dtype=np.float64)
        accumulate_cosine_mass(
            flat_probs,
            np.ascontiguousarray(labels.ravel()),
            flat_segments,
            index,
            np.ascontiguousarray(stats.representative, dtype=np.float64),
            IGNORE_INDEX,
            acc_q,
        )
        diagonal = np.einsum("mtt->mt", acc_q)
        return np.asarray(acc_q.sum(axis=1) - diagonal)
    if backend != "numpy":
        raise ValueError(f"unknown backend {backend!r}; valid: auto, numba, numpy")
    flat = probs.reshape(num_classes, -1)
    seg = segments.ravel().astype(np.int64)
    index = np.full(int(seg.max(initial=0)) + 1, -1, dtype=np.int64)
    index[stats.ids] = np.arange(stats.ids.size)
    covered = seg > 0
    p = flat[:, covered].astype(np.float64)
    row = index[seg[covered]]
    pred = p.argmax(axis=0)
    label = labels.ravel()[covered]
    target = np.where(label == IGNORE_INDEX, pred, label).astype(np.int64)
    norms = np.linalg.norm(p, axis=0)
    dot = np.einsum("cn,nc->n", p, stats.representative[row])
    cosine = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    return np.stack(
        [
            np.bincount(row, weights=cosine * p[t] * (target != t), minlength=stats.ids.size)
            for t in range(num_classes)
        ],
        axis=1,
    )
