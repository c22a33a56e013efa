"""How good the labels are when no ground truth can say: an estimate from the answers.

Data mIoU needs ground truth on images whose labels it can judge; on your own data
the only ground truth is usually the images you labelled (their labels *are* the
ground truth) and the seed model's training images (fitted to it). Then each round
spends a small share of its budget on a uniformly random sample of the segments
that can still be queried (:func:`draw_estimate_sample`); their answers say which
labels were right, and :func:`estimate_label_accuracy` turns them into an estimate
of the pool's pixel accuracy with a 95% interval (Clopper–Pearson). It is an estimate, labelled so
wherever it is shown.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from a2lc.data.sample import IGNORE_INDEX
from a2lc.workspace import Workspace
from a2lc.workspace.types import PoolSegments

ESTIMATE_MIN = 5
"""Fewest sampled segments per round (when the budget allows one more query)."""
ESTIMATE_STREAM = 0xE571
"""Second seed word of the estimate sample's random stream."""

Query = tuple[str, int, float]


def estimate_count(ws: Workspace, *, budget: int, share: float) -> int:
    """How many of a round's ``budget`` queries are the uniform sample (0 where ground
    truth measures the labels: :attr:`Workspace.measured_ids`)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"estimate_share must be in [0, 1), got {share}")
    if share == 0 or ws.measured_ids or budget < 2:
        return 0
    return int(min(budget - 1, max(ESTIMATE_MIN, round(share * budget))))


def draw_estimate_sample(
    ws: Workspace, *, taken: set[tuple[str, int]], count: int, seed: int, round_index: int
) -> list[Query]:
    """``count`` segments drawn uniformly from those a person has not labelled, outside
    ``taken``; each query's score is 0 (it was not ranked)."""
    segments = ws.pool_segments()
    candidates = [
        key
        for key, manual in zip(_keys(ws, segments), segments.manual, strict=True)
        if not manual and key not in taken
    ]
    rng = np.random.default_rng([seed, round_index, ESTIMATE_STREAM])
    chosen = rng.choice(len(candidates), size=min(count, len(candidates)), replace=False)
    return [(*candidates[int(k)], 0.0) for k in np.sort(chosen)]


def _keys(ws: Workspace, segments: PoolSegments) -> list[tuple[str, int]]:
    """``(image id, segment id)`` of every row of ``segments``."""
    ids = [s.id for s in ws.samples]
    return [
        (ids[int(i)], int(s))
        for i, s in zip(segments.image_index, segments.segment_id, strict=True)
    ]


class AccuracyInterval(NamedTuple):
    """Pixel accuracy of the sampled segments' labels: ``estimate`` and its 95% interval."""

    samples: int
    estimate: float
    low: float
    high: float


def sampled_accuracy(right: np.ndarray, sizes: np.ndarray) -> AccuracyInterval:
    """Pixel accuracy from ``(S,)`` bool "label was right" of sampled segments of ``(S,)`` pixels.

    The ratio Σ size·right / Σ size, with a Clopper–Pearson 95% interval on the
    sample's effective size ``(Σ size)² / Σ size²`` (segments of unequal size weigh
    unequally, so they count as fewer independent samples); when every sampled label
    was right, the interval still says how far the accuracy may be below 100%.
    NaN without samples.
    """
    from scipy.stats import beta

    right = np.asarray(right, dtype=bool)
    sizes = np.asarray(sizes, dtype=np.float64)
    if right.shape != sizes.shape or right.ndim != 1:
        raise ValueError(f"right {right.shape} and sizes {sizes.shape} must be (S,)")
    total = float(sizes.sum())
    if right.size == 0 or total <= 0:
        return AccuracyInterval(0, float("nan"), float("nan"), float("nan"))
    estimate = float((sizes * right).sum() / total)
    effective = total**2 / float((sizes**2).sum())
    k = estimate * effective
    low = float(beta.ppf(0.025, k, effective - k + 1)) if k > 0 else 0.0
    high = float(beta.ppf(0.975, k + 1, effective - k)) if k < effective else 1.0
    return AccuracyInterval(int(right.size), estimate, low, high)


def estimate_label_accuracy(ws: Workspace, round_index: int) -> dict[str, float]:
    """The pool's estimated pixel accuracy after round ``round_index`` (metrics to record).

    The sample's answers give the accuracy of the labels no person had given when the
    round was drawn; segments a person labelled count as right. Empty when the round
    has no answered sample.
    """
    info = {i.round: i for i in ws.rounds()}.get(round_index)
    sample = [tuple(k) for k in (info.config.get("estimate_sample") or [])] if info else []
    if not sample:
        return {}
    answers = {
        (c["image_id"], int(c["segment_id"])): c
        for c in ws.corrections(round_index)
        if c["source"] == "manual" and c["after"] != IGNORE_INDEX
    }
    segments = ws.pool_segments()
    size_of = dict(zip(_keys(ws, segments), segments.pixel_count.tolist(), strict=True))
    answered = [k for k in sample if (str(k[0]), int(k[1])) in answers]
    if not answered:
        return {}
    keys = [(str(i), int(s)) for i, s in answered]
    right = np.asarray([answers[k]["before"] == answers[k]["after"] for k in keys])
    sizes = np.asarray([size_of.get(k, 0) for k in keys])
    interval = sampled_accuracy(right, sizes)
    person = float(segments.pixel_count[segments.manual].sum())
    total = float(max(segments.pixel_count.sum(), 1))
    rest = total - person

    def pool(value: float) -> float:
        return (person + rest * value) / total

    return {
        "label_accuracy_estimate": pool(interval.estimate),
        "label_accuracy_low": pool(interval.low),
        "label_accuracy_high": pool(interval.high),
        "label_accuracy_samples": float(interval.samples),
        "label_accuracy_sampled": interval.estimate,
    }


def estimate_text(m: dict[str, float]) -> str:
    """The estimate in words (it is labelled an estimate wherever it is shown)."""
    return (
        f"estimated label accuracy {100 * m['label_accuracy_estimate']:.1f}% "
        f"(95% interval {100 * m['label_accuracy_low']:.1f}–{100 * m['label_accuracy_high']:.1f}%, "
        f"from {int(m['label_accuracy_samples'])} randomly sampled answers; an estimate, "
        "not ground truth)"
    )
