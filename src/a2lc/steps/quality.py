"""How good the labels are when no ground truth can say: an estimate from the answers.

Data mIoU needs ground truth on images whose labels it can judge; on your own data
the only ground truth is usually the images you labelled (their labels *are* the
ground truth) and the seed model's training images (fitted to it). Then each round
spends a small share of its budget on a uniformly random sample of the segments
that can still be queried (:func:`draw_estimate_sample`); their answers say which
labels were right, and :func:`label_accuracy_series` turns every sample so far,
and what the answers changed, into an estimate of the share of the pool's pixels
whose segment has the right class, with an interval. It is an estimate, labelled so
wherever it is shown.
"""

from __future__ import annotations

from typing import Any, NamedTuple

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
    """The pool's estimated label accuracy after round ``round_index`` (metrics to record),
    from the samples of rounds up to it. Empty when no round up to it has an answered sample.
    """
    return label_accuracy_series(ws, upto=round_index).get(round_index, {})


def label_accuracy_series(ws: Workspace, *, upto: int | None = None) -> dict[int, dict[str, float]]:
    """The estimated label accuracy after every round (up to ``upto``), from all samples so far.

    What is estimated is what a person's answers can say: the share of the pool's
    pixels whose segment carries the class a person gives it (pixels of another class
    inside a mixed segment are not seen by a one-class answer). Segments a person
    labelled count as right.

    The estimate is the accuracy of the labels before any answer, plus what the
    answers changed. Every round's uniform sample gives an unbiased estimate of the
    first: the segments answered outside the sample are known (an answer equal to
    the label says it was right), the sample stands for the rest, of which it is a
    uniform draw (:func:`draw_estimate_sample`). The rounds' estimates are combined
    by inverse variance, so the estimate sharpens as samples accumulate. The second
    is known: every segment whose answer changed its label counts as fixed. So the
    series moves with what the answers did, and is re-estimated as a whole with each
    new sample. Automatic changes count as neither gain nor loss; the interval (about
    95%: Clopper–Pearson per round, combined as normal) widens by their pixels on
    both sides.
    """
    infos = sorted(ws.rounds(), key=lambda i: i.round)
    if upto is not None:
        infos = [i for i in infos if i.round <= upto]
    segments = ws.pool_segments()
    keys = _keys(ws, segments)
    size_of = dict(zip(keys, segments.pixel_count.tolist(), strict=True))
    total = float(max(segments.pixel_count.sum(), 1))
    by_round: dict[int, list[dict[str, Any]]] = {}
    for c in ws.corrections():
        by_round.setdefault(int(c["round"]), []).append(c)
    ever_answered = {
        _key(c) for changes in by_round.values() for c in changes if c["source"] == "manual"
    }
    # Segments a person labelled at init (hand-labelled images): right from the start.
    given = sum(
        size
        for key, size, manual in zip(
            keys, segments.pixel_count.tolist(), segments.manual, strict=True
        )
        if manual and key not in ever_answered
    )
    right_before: dict[tuple[str, int], bool] = {}  # answered so far: was the label right
    auto: set[tuple[str, int]] = set()  # changed automatically, not answered since
    estimates: list[tuple[float, float]] = []  # per sampled round: (initial accuracy, variance)
    samples = 0
    sampled = float("nan")
    # Per round from the first sampled one: (fixed, automatic, floor) shares, sample's accuracy.
    state: dict[int, tuple[float, float, float, float]] = {}
    for info in infos:
        changes = by_round.get(info.round, [])
        answers = {
            _key(c): (int(c["before"]), int(c["after"])) for c in changes if c["source"] == "manual"
        }
        auto |= {_key(c) for c in changes if c["source"] != "manual"}
        for key, (before, after) in answers.items():
            # A void answer (no class) neither confirms nor fixes a label.
            right_before[key] = after == IGNORE_INDEX or before == after
            auto.discard(key)
        drawn = [(str(i), int(s)) for i, s in (info.config.get("estimate_sample") or [])]
        sample = sorted(k for k in drawn if k in answers and answers[k][1] != IGNORE_INDEX)
        if sample:
            interval = sampled_accuracy(
                np.asarray([right_before[k] for k in sample]),
                np.asarray([size_of.get(k, 0) for k in sample], dtype=np.float64),
            )
            in_sample = set(sample)
            outside = [k for k in right_before if k not in in_sample]
            known = given + sum(size_of.get(k, 0) for k in outside if right_before[k])
            rest = total - given - sum(size_of.get(k, 0) for k in outside)
            initial = (known + rest * interval.estimate) / total
            sd = (interval.high - interval.low) / (2 * 1.96) * rest / total
            estimates.append((initial, max(sd**2, 1e-12)))
            samples += interval.samples
            sampled = interval.estimate
        if estimates:  # from the first round with a sample on
            state[info.round] = (
                sum(size_of.get(k, 0) for k, ok in right_before.items() if not ok) / total,
                sum(size_of.get(k, 0) for k in auto) / total,
                (given + sum(size_of.get(k, 0) for k in right_before)) / total,
                sampled if sample else float("nan"),
            )
    if not estimates:
        return {}
    weights = np.asarray([1 / v for _, v in estimates])
    initial = float(np.dot(weights, [e for e, _ in estimates]) / weights.sum())
    spread = 1.96 * float(np.sqrt(1 / weights.sum()))
    out: dict[int, dict[str, float]] = {}
    for r, (fixed, unsure, floor, round_sampled) in state.items():

        def bounded(value: float, floor: float = floor) -> float:
            return float(np.clip(value, floor, 1.0))

        out[r] = {
            "label_accuracy_estimate": bounded(initial + fixed),
            "label_accuracy_low": bounded(initial + fixed - spread - unsure),
            "label_accuracy_high": bounded(initial + fixed + spread + unsure),
            "label_accuracy_samples": float(samples),
            "label_accuracy_sampled": round_sampled,
            "label_accuracy_initial": initial,
        }
    return out


def _key(change: dict[str, Any]) -> tuple[str, int]:
    return (str(change["image_id"]), int(change["segment_id"]))


def with_label_accuracy(
    ws: Workspace, metrics: dict[int, dict[str, float]]
) -> dict[int, dict[str, float]]:
    """``metrics`` with every round's label-accuracy estimate re-estimated from all samples.

    What a round recorded used the samples up to it; shown afterwards, every round
    uses them all (:func:`label_accuracy_series`).
    """
    series = label_accuracy_series(ws)
    if not series:
        return metrics
    out = {r: dict(m) for r, m in metrics.items()}
    for r, values in series.items():
        out.setdefault(r, {}).update(values)
    return out


def estimate_text(m: dict[str, float]) -> str:
    """The estimate in words (it is labelled an estimate wherever it is shown)."""
    return (
        f"estimated label accuracy {100 * m['label_accuracy_estimate']:.1f}% "
        f"(95% interval {100 * m['label_accuracy_low']:.1f}–{100 * m['label_accuracy_high']:.1f}%, "
        f"from {int(m['label_accuracy_samples'])} randomly sampled answers; an estimate, "
        "not ground truth)"
    )


def _percent(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.2f}"


def automatic_changes(m: dict[str, float]) -> tuple[str, str, str]:
    """(changed, estimated precision, true precision) of a round's automatic changes, as text.

    The checked and proven correctors report their audited estimate with the 95% lower bound;
    the reference LCM has none ("unchecked"). True precision needs ground truth.
    """
    if "proven_changed" in m:
        estimate = m.get("proven_estimated_precision")
        lower = m.get("proven_precision_lower")
        text = (
            f"{_percent(estimate)} (≥ {_percent(lower)})"
            if "proven_threshold" in m
            else "no slice proven"
        )
        return f"{int(m['proven_changed'])}", text, _percent(m.get("proven_true_precision"))
    if "checked_changed" in m:
        estimate = m.get("checked_estimated_precision")
        lower = m.get("checked_precision_lower")
        text = (
            f"{_percent(estimate)} (≥ {_percent(lower)})"
            if estimate is not None
            else "no group proven"
        )
        return f"{int(m['checked_changed'])}", text, _percent(m.get("checked_true_precision"))
    if "lcm_changed" in m:
        return f"{int(m['lcm_changed'])}", "unchecked", _percent(m.get("lcm_precision"))
    return "–", "–", "–"


LEARNING_NOTE = (
    "hand-over weight: how far the queries follow the model of the answers (0: the "
    "round-1 ranking, 1: the answer model), chosen by cross-validation on the answers; "
    "AUROC: how well that model, fitted without each answer (5-fold cross-validation), "
    "tells the wrong labels among the answered segments from the right ones (0.5: no "
    "better than chance); explored: the share of the round's budget drawn uniformly at "
    "random so the answers are not only the ones the ranking chose"
)


def learning_rows(
    metrics: dict[int, dict[str, float]], budgets: dict[int, int]
) -> list[tuple[int, str, str, str, str]]:
    """Per round that learned from the answers: (round, answer model, hand-over weight,
    cross-validated "is wrong" AUROC, exploration share spent), as text.

    ``budgets``: round → its budget (queries). Empty when no round learned.
    """
    out = []
    for r in sorted(metrics):
        m = metrics[r]
        if "learned_training_answers" not in m:
            continue
        answers = int(m["learned_training_answers"])
        model = f"fitted on {answers} answers" if m.get("learned_model") else "not yet (prior)"
        weight = m.get("learned_handover_weight")
        auc = m.get("learned_handover_learned_auroc")
        explored = m.get("learned_explored")
        budget = budgets.get(r, 0)
        share = (
            f"{100 * explored / budget:.1f}% ({int(explored)} of {budget})"
            if explored is not None and budget
            else "–"
        )
        out.append(
            (
                r,
                model,
                "–" if weight is None else f"{weight:.2f}",
                "–" if auc is None or not np.isfinite(auc) else f"{auc:.3f}",
                share,
            )
        )
    return out
