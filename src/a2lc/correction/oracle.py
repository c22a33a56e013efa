"""The simulated annotator: answers queries from ground truth (research setting).

This module and :mod:`a2lc.metrics` are the only consumers of ground truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np

from a2lc.data.sample import IGNORE_INDEX
from a2lc.data.segments import id_lookup, label_histograms, majority_labels, paint_segments

ACCURACY_THRESHOLD = 0.5
"""A queried segment whose label accuracy is at most this is relabelled (the paper's rule)."""


class OracleAnswer(NamedTuple):
    """What the simulated annotator did with one image's queried segments.

    ``labels``: the new ``H×W`` uint8 label map; the arrays below are ``(Q,)``,
    in the order of the queried ids: ``accuracy`` of the current label against
    ground truth, ``before`` (majority current label), ``after`` (majority label
    after the answer; may be 255 for a mostly void segment), ``relabel`` (the
    whole segment was set to ``after``) and ``changed`` (a pixel changed).
    """

    labels: np.ndarray
    segment_ids: np.ndarray
    accuracy: np.ndarray
    before: np.ndarray
    after: np.ndarray
    relabel: np.ndarray
    changed: np.ndarray


def simulate_annotator(
    labels: np.ndarray,
    segments: np.ndarray,
    ground_truth: np.ndarray,
    segment_ids: Iterable[int],
    *,
    threshold: float = ACCURACY_THRESHOLD,
) -> OracleAnswer:
    """Answer the queried segments of one image from its ground truth.

    For each queried segment m: ``acc = |{x ∈ m : L_x = G_x}| / |m|``; if
    ``acc ≤ threshold`` every pixel of m takes the majority ground-truth class
    of m (which may be 255), otherwise nothing changes.

    Args:
        labels: ``H×W`` uint8 current labels (not modified).
        segments: ``H×W`` int segment map.
        ground_truth: ``H×W`` uint8 ground truth (255 = void).
        segment_ids: the queried segment ids of this image (each must occur in ``segments``).
    """
    if not (labels.shape == segments.shape == ground_truth.shape):
        raise ValueError(
            f"labels {labels.shape}, segments {segments.shape} and ground truth "
            f"{ground_truth.shape} must have the same shape"
        )
    ids = np.asarray(list(segment_ids), dtype=np.int64)
    if ids.size == 0:
        empty = np.zeros(0, dtype=np.uint8)
        no = np.zeros(0, dtype=bool)
        return OracleAnswer(labels.copy(), ids, np.zeros(0), empty, empty, no, no)
    if (ids <= 0).any():
        raise ValueError("queried segment ids must be > 0 (0 means no segment)")
    row = id_lookup(segments, ids)
    label_hist = label_histograms(labels, segments, ids, rows=row)
    sizes = label_hist.sum(axis=1)
    if (sizes == 0).any():
        missing = ids[sizes == 0].tolist()
        raise ValueError(f"queried segment ids {missing} do not occur in the segment map")
    gt_majority = majority_labels(ground_truth, segments, ids, rows=row)
    agree = row[(row >= 0) & (labels.ravel() == ground_truth.ravel())]
    accuracy = np.bincount(agree, minlength=ids.size) / sizes
    before = label_hist.argmax(axis=1).astype(np.uint8)
    relabel = accuracy <= threshold
    # Painting only the relabelled segments: their rows among all queried ids, others -1.
    keep = np.flatnonzero(relabel)
    position = np.full(ids.size + 1, -1, dtype=np.int64)
    position[keep] = np.arange(keep.size)
    new_labels = paint_segments(labels, segments, ids[keep], gt_majority[keep], rows=position[row])
    after = np.where(relabel, gt_majority, before).astype(np.uint8)
    already = label_hist[np.arange(ids.size), gt_majority] == sizes
    changed = relabel & ~already
    return OracleAnswer(new_labels, ids, accuracy, before, after, relabel, changed)


def count_transitions(before: Iterable[int], after: Iterable[int]) -> dict[int, dict[int, int]]:
    """``{before: {after: count}}`` over paired label sequences."""
    table: dict[int, dict[int, int]] = {}
    for b, a in zip(before, after, strict=True):
        row = table.setdefault(int(b), {})
        row[int(a)] = row.get(int(a), 0) + 1
    return table


def merge_transitions(
    tables: Iterable[Mapping[int, Mapping[int, int]]],
) -> dict[int, dict[int, int]]:
    """Sum several transition tables."""
    merged: dict[int, dict[int, int]] = {}
    for table in tables:
        for b, row in table.items():
            target = merged.setdefault(int(b), {})
            for a, n in row.items():
                target[int(a)] = target.get(int(a), 0) + int(n)
    return merged


__all__ = [
    "ACCURACY_THRESHOLD",
    "IGNORE_INDEX",
    "OracleAnswer",
    "count_transitions",
    "majority_labels",
    "merge_transitions",
    "simulate_annotator",
]
