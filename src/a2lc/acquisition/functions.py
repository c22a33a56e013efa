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
from typing import Literal, NamedTuple

import numpy as np

from a2lc.data.sample import IGNORE_INDEX
from a2lc.data.segments import segment_sizes
from a2lc.registry import Registry

Backend = Literal["auto", "numba", "numpy"]


class SegmentScores(NamedTuple):
    """``ids``: ``(N,)`` int32 segment ids, ascending; ``scores``: ``(N,)`` float64."""

    ids: np.ndarray
    scores: np.ndarray


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


def _segment_index(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Present segment ids ``(M,)``, the id → row LUT (-1 = absent), and pixels per segment ``(M,)``."""
    ids, sizes = segment_sizes(segments)
    index = np.full(int(ids.max(initial=0)) + 1, -1, dtype=np.int64)
    index[ids] = np.arange(ids.size)
    return ids.astype(np.int32), index, sizes


def _labels_or_prediction(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.where(labels == IGNORE_INDEX, pred, labels)


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a core dependency
        return False
    return True


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
    ``class_weight`` is ``(C,)``. ``backend`` "numba" is a fused single pass,
    "numpy" the straightforward reference; "auto" uses numba when installed.
    """
    check_inputs(probs, labels, segments)
    num_classes = probs.shape[0]
    weight = np.asarray(class_weight, dtype=np.float64)
    if weight.shape != (num_classes,):
        raise ValueError(f"class_weight must be ({num_classes},), got {weight.shape}")
    if backend == "auto":
        backend = "numba" if _numba_available() else "numpy"
    if backend == "numba":
        return _wcs_numba(probs, labels, segments, weight)
    if backend == "numpy":
        return _wcs_numpy(probs, labels, segments, weight)
    raise ValueError(f"unknown backend {backend!r}; valid: auto, numba, numpy")


def _wcs_numba(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray, weight: np.ndarray
) -> SegmentScores:
    from a2lc.acquisition._kernels import accumulate, segment_rows

    num_classes = probs.shape[0]
    flat_probs = np.ascontiguousarray(probs.reshape(num_classes, -1), dtype=np.float32)
    flat_segments = np.ascontiguousarray(segments.ravel(), dtype=np.int32)
    ids, index = segment_rows(flat_segments)
    acc_a = np.zeros((ids.size, num_classes), dtype=np.float64)
    acc_r = np.zeros((ids.size, num_classes), dtype=np.float64)
    hist = np.zeros((ids.size, num_classes), dtype=np.int64)
    accumulate(
        flat_probs,
        np.ascontiguousarray(labels.ravel()),
        flat_segments,
        index,
        weight,
        IGNORE_INDEX,
        acc_a,
        acc_r,
        hist,
        np.empty(flat_segments.size, dtype=np.uint8),
        np.empty(flat_segments.size, dtype=np.float32),
    )
    return SegmentScores(ids, _finish_cosine(acc_a, acc_r))


def _finish_cosine(acc_a: np.ndarray, rep: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(rep, axis=1)
    dot = np.einsum("mc,mc->m", acc_a, rep)
    return np.asarray(np.divide(dot, norm, out=np.zeros_like(dot), where=norm > 0))


def _wcs_numpy(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray, weight: np.ndarray
) -> SegmentScores:
    num_classes = probs.shape[0]
    flat = probs.reshape(num_classes, -1)
    seg = segments.ravel().astype(np.int64)
    ids, index, _ = _segment_index(seg)
    covered = seg > 0
    p = flat[:, covered].astype(np.float64)
    row = index[seg[covered]]
    pred = p.argmax(axis=0)
    hist = np.bincount(row * num_classes + pred, minlength=ids.size * num_classes)
    hist = hist.reshape(ids.size, num_classes)
    dominant = hist.argmax(axis=1)
    on_dominant = pred == dominant[row]
    rep = (
        np.stack(
            [
                np.bincount(row[on_dominant], weights=p[c, on_dominant], minlength=ids.size)
                for c in range(num_classes)
            ],
            axis=1,
        )
        / hist[np.arange(ids.size), dominant][:, None]
    )
    target = _labels_or_prediction(labels.ravel()[covered], pred).astype(np.int64)
    confidence = 1.0 - p[target, np.arange(p.shape[1])]
    pixel_rep = rep[row]
    dot = np.einsum("cn,nc->n", p, pixel_rep)
    norms = np.linalg.norm(p, axis=0) * np.linalg.norm(pixel_rep, axis=1)
    cosine = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    scores = np.bincount(row, weights=cosine * weight[target] * confidence, minlength=ids.size)
    return SegmentScores(ids, scores)


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


ACQUISITIONS: Registry[AcquisitionFunction] = Registry("acquisition function")
for _entry in (
    AcquisitionFunction(
        "abc", "adaptively balanced confidence in label (A²LC)", abc, needs_class_weight=True
    ),
    AcquisitionFunction("alc", "confidence in label × cosine similarity, summed (ALC)", alc),
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
