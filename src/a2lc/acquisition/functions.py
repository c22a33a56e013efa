"""Acquisition functions: one score per segment of one image.

Every function takes the arrays of one image

* ``probs``: ``C×H×W`` float model probabilities (softmax output),
* ``labels``: ``H×W`` uint8 current labels (255 = ignore),
* ``segments``: ``H×W`` int segment map (0 = no segment),

and returns :class:`SegmentScores` with one score per segment id present in
``segments`` (ids ascending). Higher = query first. No I/O, no per-pixel Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from a2lc.acquisition.statistics import Backend, check_inputs, segment_statistics
from a2lc.data.sample import IGNORE_INDEX
from a2lc.data.segments import segment_sizes
from a2lc.registry import Registry


class SegmentScores(NamedTuple):
    """``ids``: ``(N,)`` int32 segment ids, ascending; ``scores``: ``(N,)`` float64."""

    ids: np.ndarray
    scores: np.ndarray


def _segment_index(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Present segment ids ``(M,)``, the id → row LUT (-1 = absent), and pixels per segment ``(M,)``."""
    ids, sizes = segment_sizes(segments)
    index = np.full(int(ids.max(initial=0)) + 1, -1, dtype=np.int64)
    index[ids] = np.arange(ids.size)
    return ids.astype(np.int32), index, sizes


def _labels_or_prediction(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.where(labels == IGNORE_INDEX, pred, labels)


def weighted_confidence_sum(
    probs: np.ndarray,
    labels: np.ndarray,
    segments: np.ndarray,
    *,
    class_weight: np.ndarray,
    backend: Backend = "auto",
) -> SegmentScores:
    """``Σ_x cos(P_x, rep) · w[y_x] · (1 − P[y_x, x])`` per segment (ABC; ALC with w ≡ 1).

    ``rep`` is the mean probability vector over the segment's pixels whose
    prediction is the segment's dominant (most frequent, ties → smallest id)
    predicted class; ``y_x`` is the label, or the prediction where it is 255.
    ``class_weight`` is ``(C,)``. ``backend`` "numba" is a fused single sweep,
    "numpy" the straightforward reference; "auto" uses numba (see
    :func:`~a2lc.acquisition.statistics.segment_statistics`).
    """
    check_inputs(probs, labels, segments)
    weight = np.asarray(class_weight, dtype=np.float64)
    if weight.shape != (probs.shape[0],):
        raise ValueError(f"class_weight must be ({probs.shape[0]},), got {weight.shape}")
    stats = segment_statistics(probs, labels, segments, backend=backend)
    return SegmentScores(stats.ids, stats.scores(weight))


def abc(
    probs: np.ndarray,
    labels: np.ndarray,
    segments: np.ndarray,
    *,
    class_weight: np.ndarray,
    backend: Backend = "auto",
) -> SegmentScores:
    """ABC (adaptively balanced confidence in label) per segment.

    ``class_weight``: ``(C,)`` from :func:`a2lc.acquisition.adaptive_class_weight`
    over the pool. The score is a sum over the segment's pixels, so larger
    segments weigh more.
    """
    return weighted_confidence_sum(
        probs, labels, segments, class_weight=class_weight, backend=backend
    )


def alc(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray, *, backend: Backend = "auto"
) -> SegmentScores:
    """ALC acquisition as this project defines it: ABC's sum with class weight ≡ 1."""
    weight = np.ones(probs.shape[0], dtype=np.float64)
    return weighted_confidence_sum(probs, labels, segments, class_weight=weight, backend=backend)


def _segment_mean(values: np.ndarray, segments: np.ndarray) -> SegmentScores:
    seg = segments.ravel()
    ids, index, sizes = _segment_index(seg)
    covered = seg > 0
    sums = np.bincount(index[seg[covered]], weights=values[covered], minlength=ids.size)
    return SegmentScores(ids, sums / sizes)


def cil_mean(probs: np.ndarray, labels: np.ndarray, segments: np.ndarray) -> SegmentScores:
    """Mean of ``1 − P[y_x, x]`` per segment (``y_x`` = label, or prediction where 255)."""
    check_inputs(probs, labels, segments)
    flat = probs.reshape(probs.shape[0], -1)
    target = _labels_or_prediction(labels.ravel(), flat.argmax(axis=0)).astype(np.int64)
    confidence = 1.0 - np.take_along_axis(flat, target[None, :], axis=0)[0].astype(np.float64)
    return _segment_mean(confidence, segments)


def entropy(probs: np.ndarray, labels: np.ndarray, segments: np.ndarray) -> SegmentScores:
    """Mean pixel entropy (nats) of the predicted distribution per segment."""
    check_inputs(probs, labels, segments)
    flat = probs.reshape(probs.shape[0], -1).astype(np.float64)
    pixel_entropy = -np.sum(flat * np.log(np.clip(flat, 1e-12, None)), axis=0)
    return _segment_mean(pixel_entropy, segments)


def random(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray, *, rng: np.random.Generator
) -> SegmentScores:
    """Uniform random scores in [0, 1), one per segment (a baseline)."""
    check_inputs(probs, labels, segments)
    ids, _, _ = _segment_index(segments.ravel())
    return SegmentScores(ids, rng.random(ids.size))


@dataclass(frozen=True)
class AcquisitionFunction:
    """A registered acquisition function and what it needs from the caller.

    ``fn(probs, labels, segments, **extra)`` where ``extra`` holds ``class_weight``
    when ``needs_class_weight`` and ``rng`` when ``needs_rng``.
    """

    name: str
    description: str
    fn: Callable[..., SegmentScores]
    needs_class_weight: bool = False
    needs_rng: bool = False
    from_label_scores: Callable[[np.ndarray, np.ndarray | None], np.ndarray] | None = None
    """Scores ``(M,)`` from :class:`~a2lc.acquisition.statistics.SegmentStatistics`'
    ``label_scores`` ``(M, C)`` (and the class weight): lets the loop score from the
    one sweep that also gives the LCM features, with the class weight computed in
    the same pass over the pool. None: the loop calls ``fn``."""

    def score(
        self,
        probs: np.ndarray,
        labels: np.ndarray,
        segments: np.ndarray,
        *,
        class_weight: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> SegmentScores:
        """Score one image; options the function does not use are ignored."""
        extra: dict[str, object] = {}
        if self.needs_class_weight:
            if class_weight is None:
                raise ValueError(
                    f"acquisition {self.name!r} needs class_weight (see adaptive_class_weight)"
                )
            extra["class_weight"] = class_weight
        if self.needs_rng:
            if rng is None:
                raise ValueError(f"acquisition {self.name!r} needs rng")
            extra["rng"] = rng
        return self.fn(probs, labels, segments, **extra)

    def scores_from(
        self, label_scores: np.ndarray, *, class_weight: np.ndarray | None = None
    ) -> np.ndarray:
        """``(M,)`` scores from one image's ``label_scores`` ``(M, C)`` (see ``from_label_scores``)."""
        if self.from_label_scores is None:
            raise ValueError(f"acquisition {self.name!r} does not score from segment statistics")
        if self.needs_class_weight and class_weight is None:
            raise ValueError(
                f"acquisition {self.name!r} needs class_weight (see adaptive_class_weight)"
            )
        return self.from_label_scores(label_scores, class_weight)


def _weighted(label_scores: np.ndarray, class_weight: np.ndarray | None) -> np.ndarray:
    assert class_weight is not None
    return np.asarray(label_scores @ np.asarray(class_weight, dtype=np.float64))


def _unweighted(label_scores: np.ndarray, class_weight: np.ndarray | None) -> np.ndarray:
    return np.asarray(label_scores.sum(axis=1))


ACQUISITIONS: Registry[AcquisitionFunction] = Registry("acquisition function")
for _entry in (
    AcquisitionFunction(
        "abc",
        "adaptively balanced confidence in label (A²LC)",
        abc,
        needs_class_weight=True,
        from_label_scores=_weighted,
    ),
    AcquisitionFunction(
        "alc",
        "confidence in label × cosine similarity, summed (ALC)",
        alc,
        from_label_scores=_unweighted,
    ),
    AcquisitionFunction("cil-mean", "mean 1 − P[label] over the segment", cil_mean),
    AcquisitionFunction("entropy", "mean pixel entropy over the segment", entropy),
    AcquisitionFunction("random", "uniform random scores", random, needs_rng=True),
):
    ACQUISITIONS.add(_entry.name, _entry)


def score_segments(
    name: str,
    probs: np.ndarray,
    labels: np.ndarray,
    segments: np.ndarray,
    *,
    class_weight: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> SegmentScores:
    """Score one image's segments with the acquisition function registered as ``name``."""
    return ACQUISITIONS.get(name).score(probs, labels, segments, class_weight=class_weight, rng=rng)
