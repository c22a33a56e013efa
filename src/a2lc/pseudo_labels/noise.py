"""Detector-like and appearance-correlated label noise for gt-proxy segments (benchmarks only).

A foundation-model pipeline such as Grounded SAM finds most objects but
confuses similar classes systematically. This module reproduces that: a
segment whose ground-truth majority class is ``c`` keeps ``c`` with
probability ``1 − e_c`` and otherwise takes a confusable class from row ``c``
of a confusion matrix. The rates ``e_c`` are solved so that the expected
initial per-class IoU matches a target vector; :func:`draw_labels` then flips
whole segments, without replacement, so that the flipped pixel mass of each
class (and what each confusable class receives) matches that expectation.

The correlated regime uses the same rates but decides *which* segments flip, and
to what, by appearance: a segment that the seed model finds similar to another
class is flipped first and takes that class (:func:`draw_correlated_labels`), as
foundation models mislabel look-alike objects the same way.

Pure functions on arrays. Shapes: ``S`` segments of the whole pool, ``C``
classes; ``histograms`` is ``(S, C)`` ground-truth pixel counts per segment
(void excluded), ``majority`` is ``(S,)`` with ``-1`` for a segment without a
valid ground-truth pixel. IoUs are fractions in ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a2lc._json import read_json
from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import DataError, Problem
from a2lc.metrics import iou_per_class

CAMVID_GROUNDED_SAM_TARGET: dict[str, float] = {
    "Sky": 90.5,
    "Building": 82.9,
    "Pole": 57.7,
    "Road": 95.8,
    "Pavement": 68.0,
    "Tree": 77.6,
    "SignSymbol": 16.0,  # traffic sign 29.5 and traffic light 2.4
    "Fence": 39.9,
    "Car": 87.2,
    "Pedestrian": 69.6,
    "Bicyclist": 38.7,  # rider 8.8 and bicycle 68.5
}
"""The paper's initial Grounded SAM IoUs on Cityscapes (%), mapped to CamVid classes."""

SOLVER_TOLERANCE = 1e-10
SOLVER_MAX_ITERATIONS = 1000
UNREACHABLE_TOLERANCE = 0.005
"""Expected IoU this far (fraction) from the target marks a class as not reachable."""


def confusion_rows(confusion: np.ndarray) -> np.ndarray:
    """``(C, C)`` row-stochastic confusable-class distributions from a ``C×C`` confusion.

    Row ``c`` is the off-diagonal part of row ``c`` (ground truth ``c``,
    predicted ``j ≠ c``), normalised; where that part is empty, uniform over the
    other classes. The diagonal is always 0.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    num_classes = confusion.shape[0]
    if confusion.shape != (num_classes, num_classes):
        raise ValueError(f"confusion must be C×C, got {confusion.shape}")
    off = confusion * (1.0 - np.eye(num_classes))
    totals = off.sum(axis=1, keepdims=True)
    uniform = (1.0 - np.eye(num_classes)) / max(num_classes - 1, 1)
    return np.where(totals > 0, off / np.where(totals > 0, totals, 1.0), uniform)


def label_probabilities(majority: np.ndarray, rates: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``(S, C)``: probability that each segment ends up labelled with each class."""
    majority = np.asarray(majority, dtype=np.int64)
    num_classes = rows.shape[0]
    out = np.zeros((majority.size, num_classes))
    valid = majority >= 0
    m = majority[valid]
    out[valid] = rates[m, None] * rows[m]
    out[np.flatnonzero(valid), m] += 1.0 - rates[m]
    return out


def expected_confusion(
    histograms: np.ndarray, majority: np.ndarray, rates: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """``C×C`` expected (ground truth, label) pixel counts under flip ``rates``."""
    probabilities = label_probabilities(majority, rates, rows)
    return np.asarray(np.asarray(histograms, dtype=np.float64).T @ probabilities)


def majority_iou(histograms: np.ndarray, majority: np.ndarray) -> np.ndarray:
    """``(C,)`` IoU when every segment carries its majority class: the ceiling of any target."""
    num_classes = histograms.shape[1]
    return iou_per_class(
        expected_confusion(histograms, majority, np.zeros(num_classes), np.eye(num_classes))
    )


@dataclass(frozen=True)
class SolvedRates:
    """Flip rates ``(C,)`` solved for a target, with what the solver found."""

    rates: np.ndarray
    target: np.ndarray
    """``(C,)`` the target actually used (capped; NaN where no target was given)."""
    capped: tuple[int, ...]
    """Classes whose requested target exceeded :func:`majority_iou`."""
    expected_iou: np.ndarray
    iterations: int
    converged: bool

    @property
    def unreachable(self) -> tuple[int, ...]:
        """Classes whose expected IoU misses the (capped) target, e.g. because other
        classes' flips into them add more false positives than the target allows."""
        miss = np.abs(self.expected_iou - self.target) > UNREACHABLE_TOLERANCE
        return tuple(int(c) for c in np.flatnonzero(np.isfinite(self.target) & miss))


def solve_flip_rates(
    histograms: np.ndarray, majority: np.ndarray, rows: np.ndarray, target: np.ndarray
) -> SolvedRates:
    """Rates ``e_c`` whose expected per-class IoU equals ``target`` (``(C,)``, NaN = no noise).

    Fixed-point iteration on expected pixel counts: each sweep solves every
    class's IoU equation in closed form for its own rate, holding the flips of
    the other classes (which add false positives and true positives to it)
    fixed, until the rates stop moving. Deterministic.
    """
    histograms = np.asarray(histograms, dtype=np.float64)
    majority = np.asarray(majority, dtype=np.int64)
    num_classes = histograms.shape[1]
    target = np.asarray(target, dtype=np.float64)
    if target.shape != (num_classes,):
        raise ValueError(f"target must have shape ({num_classes},), got {target.shape}")
    ceiling = majority_iou(histograms, majority)
    capped = tuple(
        int(c)
        for c in np.flatnonzero(np.isfinite(target) & np.isfinite(ceiling) & (target > ceiling))
    )
    goal = target.copy()
    goal[list(capped)] = ceiling[list(capped)]

    valid = majority >= 0
    hist = histograms[valid]
    maj = majority[valid]
    size = hist.sum(axis=1)
    # A_c: pixels of class c in segments whose majority is c; B_c: all pixels of those segments.
    kept_tp = np.bincount(maj, weights=hist[np.arange(maj.size), maj], minlength=num_classes)
    kept_pred = np.bincount(maj, weights=size, minlength=num_classes)
    gt_total = hist.sum(axis=0)

    rates = np.zeros(num_classes)
    solvable = np.isfinite(goal) & (kept_pred > 0)
    iterations, converged = 0, False
    while not converged and iterations < SOLVER_MAX_ITERATIONS:
        iterations += 1
        flip = rates[maj, None] * rows[maj]  # (S', C): probability of moving into each class
        tp_in = (hist * flip).sum(axis=0)
        pred_in = size @ flip
        base = gt_total + pred_in - tp_in
        denominator = kept_tp - goal * (kept_pred - kept_tp)
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = (goal * base - tp_in) / denominator
        keep = np.where(denominator > 0, keep, 1.0)
        new = np.where(solvable, 1.0 - np.clip(keep, 0.0, 1.0), 0.0)
        converged = float(np.abs(new - rates).max()) < SOLVER_TOLERANCE
        rates = new
    expected = iou_per_class(expected_confusion(histograms, majority, rates, rows))
    return SolvedRates(
        rates=rates,
        target=goal,
        capped=capped,
        expected_iou=expected,
        iterations=iterations,
        converged=converged,
    )


def draw_labels(
    majority: np.ndarray,
    rates: np.ndarray,
    rows: np.ndarray,
    *,
    sizes: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """``(S,)`` uint8 labels: majority classes, with a share ``e_c`` of each class's pixels flipped.

    ``sizes`` is ``(S,)`` valid pixels per segment. The solver works on expected
    pixel counts, so the draw matches them rather than segment counts (a few large
    segments would otherwise swing a class's IoU): class ``c``'s segments are
    visited in random order, without replacement, and the prefix whose pixel mass
    is closest to ``e_c`` of the class's mass is flipped. The flipped segments then
    take their new classes by systematic sampling along their mass, so class ``j``
    receives a share ``rows[c, j]`` of it. Both are exact up to one segment's mass.
    Segments with ``majority == -1`` get 255 (uncovered).
    """
    majority = np.asarray(majority, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.shape != majority.shape:
        raise ValueError(f"sizes {sizes.shape} and majority {majority.shape} differ in shape")
    num_classes = rows.shape[0]
    labels = np.where(majority >= 0, majority, IGNORE_INDEX).astype(np.uint8)
    for c in range(num_classes):
        members = np.flatnonzero(majority == c)
        if members.size == 0 or rates[c] <= 0:
            continue
        order = rng.permutation(members)
        mass = np.cumsum(sizes[order])
        prefixes = np.concatenate([[0.0], mass])
        count = int(np.argmin(np.abs(prefixes - rates[c] * mass[-1])))
        if count == 0:
            continue
        flipped = order[:count]
        centres = (mass[:count] - sizes[flipped] / 2) / mass[count - 1]
        allowed = np.flatnonzero(rows[c] > 0)
        edges = np.cumsum(rows[c])
        destination = np.searchsorted(edges, centres, side="right")
        # Rounding can leave the last edge a hair below 1: stay on an allowed class.
        labels[flipped] = np.minimum(destination, allowed[-1])
    return labels


LOOKALIKE_SHARPNESS = 4.0
"""Correlated regime: a segment's chance to be flipped grows as (look-alike probability)^this."""
LOOKALIKE_FLOOR = 1e-6
"""Smallest flip weight, so every segment of a class can still be drawn."""


def lookalike_classes(majority: np.ndarray, lookalike: np.ndarray) -> np.ndarray:
    """``(S,)`` the class each segment looks most like other than its majority (−1: none).

    ``lookalike``: ``(S, C)`` the seed model's mean probability of each class over
    each segment.
    """
    majority = np.asarray(majority, dtype=np.int64)
    scores = np.array(lookalike, dtype=np.float64)
    valid = majority >= 0
    scores[np.flatnonzero(valid), majority[valid]] = -np.inf
    out = scores.argmax(axis=1)
    return np.where(valid, out, -1)


def lookalike_weights(majority: np.ndarray, lookalike: np.ndarray) -> np.ndarray:
    """``(S,)`` flip weights: (probability of the most look-alike other class)^sharpness."""
    other = lookalike_classes(majority, lookalike)
    rows = np.arange(other.size)
    best = np.where(other >= 0, np.asarray(lookalike)[rows, np.maximum(other, 0)], 0.0)
    return np.asarray(np.maximum(best, LOOKALIKE_FLOOR) ** LOOKALIKE_SHARPNESS)


def lookalike_rows(
    majority: np.ndarray, lookalike: np.ndarray, *, sizes: np.ndarray, num_classes: int
) -> np.ndarray:
    """``(C, C)`` where flipped mass of each class goes in the correlated regime.

    Row ``c``: the mass of class ``c``'s segments, weighted by their flip weight,
    split by their most look-alike other class; uniform over the other classes
    where a class has no segment. The flip-rate solver takes it as the confusion rows.
    """
    majority = np.asarray(majority, dtype=np.int64)
    other = lookalike_classes(majority, lookalike)
    weight = lookalike_weights(majority, lookalike) * np.asarray(sizes, dtype=np.float64)
    valid = (majority >= 0) & (other >= 0)
    flat = np.bincount(
        majority[valid] * num_classes + other[valid],
        weights=weight[valid],
        minlength=num_classes * num_classes,
    ).reshape(num_classes, num_classes)
    return confusion_rows(flat)


def draw_correlated_labels(
    majority: np.ndarray,
    rates: np.ndarray,
    lookalike: np.ndarray,
    *,
    sizes: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """``(S,)`` uint8 labels: a share ``e_c`` of each class's pixels flipped to look-alikes.

    Like :func:`draw_labels`, the prefix of class ``c``'s segments whose pixel mass is
    closest to ``e_c`` of the class's mass is flipped, but the order is a weighted
    draw without replacement (Efraimidis–Spirakis keys ``u^(1/w)``, ``w`` from
    :func:`lookalike_weights`), so segments that look like another class are flipped
    first, and each flipped segment takes the class it looks most like: look-alike
    segments share the same error.
    """
    majority = np.asarray(majority, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.shape != majority.shape or len(lookalike) != majority.size:
        raise ValueError(
            f"sizes {sizes.shape}, lookalike {np.shape(lookalike)} and majority "
            f"{majority.shape} must describe the same segments"
        )
    num_classes = len(rates)
    other = lookalike_classes(majority, lookalike)
    weight = lookalike_weights(majority, lookalike)
    labels = np.where(majority >= 0, majority, IGNORE_INDEX).astype(np.uint8)
    keys = rng.random(majority.size) ** (1.0 / weight)
    for c in range(num_classes):
        members = np.flatnonzero((majority == c) & (other >= 0))
        if members.size == 0 or rates[c] <= 0:
            continue
        order = members[np.argsort(-keys[members], kind="stable")]
        mass = np.cumsum(sizes[order])
        prefixes = np.concatenate([[0.0], mass])
        count = int(np.argmin(np.abs(prefixes - rates[c] * mass[-1])))
        flipped = order[:count]
        labels[flipped] = other[flipped]
    return labels


def flipped_share(
    majority: np.ndarray, labels: np.ndarray, sizes: np.ndarray, *, num_classes: int
) -> np.ndarray:
    """``(C,)`` realised flip rates: the share of each class's segment pixels relabelled."""
    majority = np.asarray(majority, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.float64)
    valid = majority >= 0
    total = np.bincount(majority[valid], weights=sizes[valid], minlength=num_classes)
    moved = valid & (labels != majority)
    flipped = np.bincount(majority[moved], weights=sizes[moved], minlength=num_classes)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, flipped / total, 0.0)


def realised_confusion(histograms: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``C×C`` (ground truth, label) pixel counts of segments labelled ``labels`` (255 skipped)."""
    num_classes = histograms.shape[1]
    labels = np.asarray(labels, dtype=np.int64)
    covered = labels != IGNORE_INDEX
    onehot = np.zeros((labels.size, num_classes))
    onehot[np.flatnonzero(covered), labels[covered]] = 1.0
    return np.asarray(histograms, dtype=np.float64).T @ onehot


def target_vector(target: Mapping[str, float], class_names: Sequence[str]) -> np.ndarray:
    """``(C,)`` fractions from a class name → IoU (%) mapping; NaN for classes not named."""
    index = {name: i for i, name in enumerate(class_names)}
    vector = np.full(len(class_names), np.nan)
    for name, value in target.items():
        vector[index[name]] = value / 100.0
    return vector


def validate_target(
    raw: object, class_names: Sequence[str], *, source: Path | str
) -> dict[str, float]:
    """Check a class name → IoU (%) mapping; raise :class:`DataError` naming ``source``."""
    if not isinstance(raw, dict) or not raw:
        raise DataError(
            Problem(
                source,
                "must be a JSON object of class name → target IoU in %, e.g. "
                '{"Road": 95.8, "Car": 87.2}',
            )
        )
    problems = []
    for name, value in raw.items():
        if name not in class_names:
            problems.append(
                Problem(source, f"unknown class {name!r}; valid names: {', '.join(class_names)}")
            )
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= 100
        ):
            problems.append(
                Problem(
                    source, f"{name!r}: target IoU must be a number in 0..100 (%), got {value!r}"
                )
            )
    DataError.collect(problems)
    return {str(k): float(v) for k, v in raw.items()}


def load_target(path: Path, class_names: Sequence[str]) -> dict[str, float]:
    """Read ``--noise-target FILE.json`` (class name → IoU in %)."""
    return validate_target(read_json(path), class_names, source=path)


def default_target(class_names: Sequence[str]) -> dict[str, float]:
    """The built-in target for a dataset whose classes are CamVid's; else a :class:`DataError`."""
    if set(class_names) == set(CAMVID_GROUNDED_SAM_TARGET):
        return dict(CAMVID_GROUNDED_SAM_TARGET)
    raise DataError(
        Problem(
            "--noise-target",
            "there is a built-in detector-like target only for CamVid's classes; pass "
            "--noise-target FILE.json with class name → target IoU in % for "
            f"{', '.join(class_names)}",
        )
    )
