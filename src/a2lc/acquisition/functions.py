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

from a2lc.acquisition.class_weight import adaptive_class_weight
from a2lc.acquisition.statistics import (
    Backend,
    SegmentStatistics,
    check_inputs,
    other_class_mass,
    segment_statistics,
)
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


def expected_gain(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray, *, class_sizes: np.ndarray
) -> SegmentScores:
    """Expected IoU gain of one image's segments given the pool's class sizes ``U`` ``(C,)``.

    ``Σ_x cos(P_x, rep) · Σ_{t≠y_x} P[t, x] / U_t``: each pixel's disagreement with
    its label, weighted by how much fixing it moves the IoU of the class it
    probably belongs to. In the loop ``U`` comes from the same pass over the pool
    (:func:`class_sizes`).
    """
    stats = segment_statistics(probs, labels, segments)
    mass = other_class_mass(probs, labels, segments, stats)
    return SegmentScores(stats.ids, mass @ (1.0 / np.asarray(class_sizes, dtype=np.float64)))


def expected_gain_fp(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray, *, class_sizes: np.ndarray
) -> SegmentScores:
    """:func:`expected_gain` plus ``Σ_x cos · (1 − P[y_x, x]) / U_{y_x}`` (false positives)."""
    stats = segment_statistics(probs, labels, segments)
    inverse = 1.0 / np.asarray(class_sizes, dtype=np.float64)
    mass = other_class_mass(probs, labels, segments, stats)
    return SegmentScores(stats.ids, mass @ inverse + stats.label_scores @ inverse)


def _cleanlab_scores(probs: np.ndarray, labels: np.ndarray, segments: np.ndarray) -> SegmentScores:
    """``cleanlab``: ``1 − quality`` per segment (cleanlab's softmin of pixel quality)."""
    from a2lc.acquisition.peers import cleanlab_quality

    ids, quality = cleanlab_quality(probs, labels, segments)
    return SegmentScores(ids, 1.0 - quality)


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
class PoolTotals:
    """``(C,)`` sums over the pool's covered pixels, collected in the scoring pass."""

    eligible_label_pixels: np.ndarray
    """Pixels labelled c in segments not corrected manually in an earlier round (ABC's n_c)."""
    label_pixels: np.ndarray
    """Pixels labelled c in every segment (255 not counted)."""
    probability_mass: np.ndarray
    """``Σ_x P[c, x]`` over every covered pixel."""


ImageParts = Callable[[SegmentStatistics, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(statistics, probs C×H×W, labels H×W, segments H×W) → ``(M, K)`` score parts."""
PoolFinish = Callable[[np.ndarray, PoolTotals], tuple[np.ndarray, dict[str, object]]]
"""(parts ``(N, K)`` of the whole pool, totals) → (scores ``(N,)``, what to record)."""

MIN_CLASS_SIZE_FRACTION = 1e-3
"""Expected gain: ``U_c`` is clipped below at this fraction of the mean class size."""


def class_sizes(totals: PoolTotals) -> np.ndarray:
    """``U_c = max(pixels labelled c, Σ_x P[c, x])`` over the pool, clipped below; ``(C,)``."""
    sizes = np.maximum(
        np.asarray(totals.label_pixels, dtype=np.float64),
        np.asarray(totals.probability_mass, dtype=np.float64),
    )
    floor = max(1.0, MIN_CLASS_SIZE_FRACTION * float(sizes.sum()) / max(1, sizes.size))
    return np.asarray(np.maximum(sizes, floor))


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
    needs_pool: bool = False
    """Scores only from a pass over the whole pool (no per-image ``fn``)."""
    image_parts: ImageParts | None = None
    """Per image, ``(M, K)`` parts of the score from the one sweep's statistics."""
    finish: PoolFinish | None = None
    """Scores ``(N,)`` of the whole pool from its parts ``(N, K)`` and pool totals.

    With both set, the loop scores from the sweep that also gives the LCM
    features, and pool-level quantities (ABC's class weight, expected gain's
    class sizes) come from that same pass over the pool. Otherwise it calls ``fn``."""

    @property
    def pooled(self) -> bool:
        return self.image_parts is not None and self.finish is not None

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
        if self.needs_pool:
            raise ValueError(
                f"acquisition {self.name!r} needs pool totals: call its function with "
                "class_sizes, or score through the loop"
            )
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


def _label_score_parts(
    stats: SegmentStatistics, probs: np.ndarray, labels: np.ndarray, segments: np.ndarray
) -> np.ndarray:
    return stats.label_scores


def _other_class_parts(
    stats: SegmentStatistics, probs: np.ndarray, labels: np.ndarray, segments: np.ndarray
) -> np.ndarray:
    return other_class_mass(probs, labels, segments, stats)


def _both_parts(
    stats: SegmentStatistics, probs: np.ndarray, labels: np.ndarray, segments: np.ndarray
) -> np.ndarray:
    return np.hstack([other_class_mass(probs, labels, segments, stats), stats.label_scores])


def _finish_abc(parts: np.ndarray, totals: PoolTotals) -> tuple[np.ndarray, dict[str, object]]:
    weight = adaptive_class_weight(totals.eligible_label_pixels)
    return parts @ weight, {"class_weight": [float(w) for w in weight]}


def _finish_alc(parts: np.ndarray, totals: PoolTotals) -> tuple[np.ndarray, dict[str, object]]:
    return parts.sum(axis=1), {}


def _finish_alc_sized(
    parts: np.ndarray, totals: PoolTotals
) -> tuple[np.ndarray, dict[str, object]]:
    """ALC's scores, and the pool's class sizes for a learned expected gain."""
    return parts.sum(axis=1), {"class_sizes": [float(u) for u in class_sizes(totals)]}


def _finish_eg(parts: np.ndarray, totals: PoolTotals) -> tuple[np.ndarray, dict[str, object]]:
    sizes = class_sizes(totals)
    return parts @ (1.0 / sizes), {"class_sizes": [float(u) for u in sizes]}


def _finish_eg_fp(parts: np.ndarray, totals: PoolTotals) -> tuple[np.ndarray, dict[str, object]]:
    sizes = class_sizes(totals)
    inverse = 1.0 / sizes
    num_classes = sizes.size
    scores = parts[:, :num_classes] @ inverse + parts[:, num_classes:] @ inverse
    return scores, {"class_sizes": [float(u) for u in sizes]}


ACQUISITIONS: Registry[AcquisitionFunction] = Registry("acquisition function")
for _entry in (
    AcquisitionFunction(
        "abc",
        "adaptively balanced confidence in label (A²LC)",
        abc,
        needs_class_weight=True,
        image_parts=_label_score_parts,
        finish=_finish_abc,
    ),
    AcquisitionFunction(
        "alc",
        "confidence in label × cosine similarity, summed (ALC)",
        alc,
        image_parts=_label_score_parts,
        finish=_finish_alc,
    ),
    AcquisitionFunction(
        "eg",
        "expected IoU gain: Σ_x cos · Σ_{t≠y} P[t,x] / U_t (U_t: pool size of class t)",
        expected_gain,
        needs_pool=True,
        image_parts=_other_class_parts,
        finish=_finish_eg,
    ),
    AcquisitionFunction(
        "learned",
        "expected IoU gain P(wrong) × gain from a model of the answers, with a random "
        "exploration share (in the loop; before any answer, and outside the loop, it is eg)",
        expected_gain,
        needs_pool=True,
        image_parts=_other_class_parts,
        finish=_finish_eg,
    ),
    AcquisitionFunction(
        "hedged",
        "learned, ranked by a mix of the answer model's and the model's own expected gain "
        "whose learned share grows with the answers (eg before any answer and outside the loop)",
        expected_gain,
        needs_pool=True,
        image_parts=_other_class_parts,
        finish=_finish_eg,
    ),
    AcquisitionFunction(
        "validated",
        "learned, ranked by a mix of the answer model's and ALC's ranks whose learned share "
        "is cross-validated on the answers each round (ALC before any answer and outside "
        "the loop)",
        alc,
        image_parts=_label_score_parts,
        finish=_finish_alc_sized,
    ),
    AcquisitionFunction(
        "eg-fp",
        "expected IoU gain plus the false-positive term Σ_x cos · (1 − P[y,x]) / U_y",
        expected_gain_fp,
        needs_pool=True,
        image_parts=_both_parts,
        finish=_finish_eg_fp,
    ),
    AcquisitionFunction(
        "cleanlab",
        "cleanlab's segmentation label quality, softmin over the segment (needs a2lc[cleanlab])",
        _cleanlab_scores,
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
