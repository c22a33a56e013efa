"""Learning from the answers: which segments are wrong, and which corrections are proven.

Every answer is a clean label: it says whether the segment was wrong and what it
truly is. A model of the answers (:mod:`a2lc.correction.answer_model`, scikit-learn's
multinomial logistic regression by default, over the checked corrector's per-segment
evidence: current label, mean probabilities, margin, size, the label's probability,
the mask-pooled embedding) gives every segment ``P(true class = t)``. From it:

* the acquisition ranks by expected IoU gain, ``P(wrong) × gain`` =
  ``size · Σ_{t ≠ y} P(t) / U_t`` (:func:`expected_gain`);
* the corrector proposes the most likely class where it differs from the label
  and applies the largest top-confidence slice of proposals whose precision is
  *proven*: a fixed sequence of one-sided Clopper–Pearson tests, from the most
  confident slice down, on answers drawn uniformly at random inside the slice
  (:func:`proven_threshold`), pooled over rounds.

Two random samples keep the learning honest: an *exploration* share of every
round's budget drawn uniformly from the segments that can be queried (so the
answers are not only the ones the acquisition chose, and the share of wrong labels
in the pool is measured: :func:`match_rate` puts the model's ``P(wrong)`` back on
that scale), and an *audit* share drawn uniformly from the most confident
proposals (the region the corrector may apply).

Pure functions on arrays; ``N`` segments, ``C`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from a2lc.correction.answer_model import (
    ANSWER_MODEL_KINDS,
    L2,
    AnswerModelKind,
    cross_fitted_wrong,
)
from a2lc.correction.guarantees import GUARANTEES, GuaranteeName
from a2lc.correction.guarantees import Evidence as Evidence
from a2lc.correction.guarantees import Slice as Slice
from a2lc.correction.guarantees import proven_threshold as proven_threshold
from a2lc.correction.voices import VOICES
from a2lc.data.sample import IGNORE_INDEX

FdrRegion = Literal["reserved", "leftover"]
FDR_REGIONS: tuple[FdrRegion, ...] = ("reserved", "leftover")


@dataclass(frozen=True)
class LearnedConfig:
    """Options of the learned acquisition and the proven corrector (saved with the run)."""

    explore_share: float = 0.05
    """Share of each round's budget drawn uniformly from every segment that can be queried."""
    audit_share: float = 0.1
    """Share of each round's budget drawn uniformly from the corrector's region."""
    region_per_audit: int = 4
    """The corrector's region: the ``region_per_audit × audits`` most confident proposals."""
    min_precision: float = 0.9
    """Corrections are applied only in a slice whose precision's lower bound reaches this."""
    confidence: float = 0.95
    """One-sided confidence level of that bound (fixed-sequence testing keeps it overall)."""
    first_test: int = 30
    """Sampled answers in the first (most confident) slice tested; with all right, 0.95**(1/30)
    = 0.905 clears 0.9."""
    test_growth: float = 1.5
    """Each next slice tested holds this many times the previous one's sampled answers."""
    min_answers: int = 20
    """Fewer answers than this (or a single class): no model, the round-1 prior ranks."""
    answer_model: AnswerModelKind = "logistic"
    """The answer model (:mod:`a2lc.correction.answer_model`): ``logistic`` or ``boosting``."""
    l2: float = L2
    """Ridge penalty of the logistic answer model (standardised features, per sample)."""
    handover_folds: int = 5
    """``validated``: folds of the cross-validation that weighs the answer model against the
    prior."""
    guarantee: GuaranteeName = "bound"
    """What the proven corrector promises (:mod:`a2lc.correction.guarantees`): ``bound``
    (the applied set's precision is below ``min_precision`` with probability at most
    ``1 − confidence``; evidence pooled over rounds) or ``fdr`` (on average at most
    ``1 − min_precision`` of the applied changes are wrong; the round's own audit of the
    corrector's region, see ``fdr_region``)."""
    fdr_region: FdrRegion = "reserved"
    """``fdr``: where the corrector's region comes from. ``reserved``: the most confident
    proposals, taken before the acquisition (which then asks elsewhere); ``leftover``: the
    most confident of the proposals the acquisition and the exploration left, so where
    the corrector abstains people lose only the audit's share of the budget."""
    voices: tuple[str, ...] = ("answer",)
    """``fdr``: the voices that score proposals (:mod:`a2lc.correction.voices`), combined by a
    model of earlier rounds' audits; the first scores alone until there are enough."""

    def __post_init__(self) -> None:
        for name in ("explore_share", "audit_share"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.explore_share + self.audit_share >= 1.0:
            raise ValueError("explore_share + audit_share must leave part of the budget")
        if not 0.0 < self.min_precision < 1.0:
            raise ValueError(f"min_precision must be in (0, 1), got {self.min_precision}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if self.answer_model not in ANSWER_MODEL_KINDS:
            raise ValueError(
                f"answer_model must be one of {ANSWER_MODEL_KINDS}, got {self.answer_model!r}"
            )
        if self.handover_folds < 2:
            raise ValueError(f"handover_folds must be at least 2, got {self.handover_folds}")
        if self.guarantee not in GUARANTEES:
            GUARANTEES.get(self.guarantee)  # raises, naming the valid ones
        if not self.voices:
            raise ValueError("voices must name at least one voice")
        for voice in self.voices:
            VOICES.get(voice)
        if len(set(self.voices)) != len(self.voices):
            raise ValueError(f"voices are named twice: {self.voices}")
        if self.guarantee == "bound" and self.voices != ("answer",):
            raise ValueError(
                "voices are combined under the fdr guarantee only (--guarantee fdr); "
                f"bound scores by the answer model alone, got voices {self.voices}"
            )
        if self.fdr_region not in FDR_REGIONS:
            raise ValueError(f"fdr_region must be one of {FDR_REGIONS}, got {self.fdr_region!r}")
        if self.guarantee == "bound" and self.fdr_region != "reserved":
            raise ValueError(
                "the region can be drawn from what the acquisition left under the fdr "
                "guarantee only (--guarantee fdr)"
            )
        if self.region_per_audit < 1 or self.first_test < 1 or self.test_growth <= 1.0:
            raise ValueError("region_per_audit, first_test ≥ 1 and test_growth > 1 are required")


def wrong_probability(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(N,)`` ``1 − P(label)`` from ``(N, C)`` class probabilities; 255 labels: 1."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    labelled = (labels >= 0) & (labels < probabilities.shape[1])
    own = probabilities[np.arange(labels.size), np.where(labelled, labels, 0)]
    return np.where(labelled, 1.0 - own, 1.0)


def expected_gain(
    probabilities: np.ndarray, labels: np.ndarray, sizes: np.ndarray, class_sizes: np.ndarray
) -> np.ndarray:
    """``(N,)`` expected IoU gain of asking about each segment: ``size · Σ_{t≠y} P(t) / U_t``.

    ``probabilities``: ``(N, C)`` the answer model's; ``labels``: ``(N,)`` current
    labels (255: every class counts); ``sizes``: ``(N,)`` pixels; ``class_sizes``:
    ``(C,)`` the pool's class sizes ``U`` (as the pixel-level ``eg`` uses). Equals
    ``P(wrong) × size × E[1 / U_t | wrong]``.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    _count, num_classes = probabilities.shape
    other = probabilities.copy()
    labelled = (labels >= 0) & (labels < num_classes)
    other[np.flatnonzero(labelled), labels[labelled]] = 0.0
    inverse = 1.0 / np.maximum(np.asarray(class_sizes, dtype=np.float64), 1.0)
    return np.asarray(np.asarray(sizes, dtype=np.float64) * (other @ inverse))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.asarray(np.log(p) - np.log1p(-p))


class Calibration(NamedTuple):
    """``P'(wrong) = σ(scale · logit P(wrong) + shift)``; the identity is (1, 0); ``samples``:
    the uniform sample it was measured on."""

    scale: float = 1.0
    shift: float = 0.0
    samples: int = 0


def match_rate(p_wrong: np.ndarray, wrong: np.ndarray) -> Calibration:
    """The shift that makes the mean of ``(N,)`` ``P(wrong)`` over the pool the sampled rate.

    The answer model learns from answers the acquisition chose, where wrong labels are
    far more common than in the pool, so its ``P(wrong)`` is too high everywhere (a
    prior shift). ``wrong``: ``(S,)`` outcomes of a uniform sample of the pool (the
    exploration answers); the rate is their posterior mean under a uniform prior,
    ``(k + 1) / (S + 2)``. One parameter, solved by bisection on the logit scale, so a
    handful of samples cannot bend the ranking; without samples, the identity.
    """
    wrong = np.asarray(wrong, dtype=bool)
    if wrong.size == 0 or np.asarray(p_wrong).size == 0:
        return Calibration()
    rate = (float(wrong.sum()) + 1.0) / (wrong.size + 2.0)
    z = _logit(p_wrong)
    low, high = -40.0, 40.0
    for _ in range(80):
        middle = 0.5 * (low + high)
        if float(np.mean(1.0 / (1.0 + np.exp(-(z + middle))))) > rate:
            high = middle
        else:
            low = middle
    return Calibration(1.0, 0.5 * (low + high), int(wrong.size))


def recalibrate(
    probabilities: np.ndarray, labels: np.ndarray, calibration: Calibration
) -> np.ndarray:
    """``(N, C)`` probabilities with ``P(wrong)`` recalibrated, the other classes' shares kept.

    Rows whose label is 255 are returned unchanged.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probabilities.shape[1]
    labelled = (labels >= 0) & (labels < num_classes)
    before = wrong_probability(probabilities, labels)
    after = 1.0 / (1.0 + np.exp(-(calibration.scale * _logit(before) + calibration.shift)))
    out = probabilities.copy()
    rows = np.flatnonzero(labelled)
    others = probabilities[rows].copy()
    others[np.arange(rows.size), labels[rows]] = 0.0
    total = others.sum(axis=1, keepdims=True)
    share = np.divide(
        others, total, out=np.full_like(others, 1.0 / max(1, num_classes - 1)), where=total > 0
    )
    share[np.arange(rows.size), labels[rows]] = 0.0
    out[rows] = share * after[rows, None]
    out[rows, labels[rows]] = 1.0 - after[rows]
    return out


class Proposals(NamedTuple):
    """Every eligible segment whose most likely class differs from its label.

    ``rows``: ``(P,)`` segments, most confident first; ``proposed``: ``(P,)`` class;
    ``confidence``: ``(P,)`` its probability.
    """

    rows: np.ndarray
    proposed: np.ndarray
    confidence: np.ndarray


def ranked_proposals(
    probabilities: np.ndarray, labels: np.ndarray, *, eligible: np.ndarray
) -> Proposals:
    """Proposals from ``(N, C)`` probabilities for ``(N,)`` labels, most confident first.

    ``eligible``: ``(N,)`` bool, segments that may change. Labels 255 get no proposal.
    Ties keep the row order (a stable sort), so the result is deterministic.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    best = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(best.size), best]
    chosen = np.flatnonzero(
        np.asarray(eligible, dtype=bool) & (labels != IGNORE_INDEX) & (best != labels)
    )
    order = chosen[np.argsort(-confidence[chosen], kind="stable")]
    return Proposals(order, best[order], confidence[order])


def uniform_sample(candidates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``min(count, len)`` of ``candidates`` ``(K,)`` drawn uniformly without replacement, sorted."""
    candidates = np.asarray(candidates, dtype=np.int64)
    count = max(0, min(int(count), candidates.size))
    return np.sort(rng.choice(candidates, size=count, replace=False)) if count else candidates[:0]


HANDOVER_GRID = np.linspace(0.0, 1.0, 11)
"""Weights of the answer model tried by :func:`handover_weight`."""


class Handover(NamedTuple):
    """How far the answers trust their own model: ``weight`` in [0, 1] (0: the prior
    ranks, 1: the answer model does), and the out-of-fold AUROCs (for "the answer
    changed the label", over the answered segments) it was chosen from."""

    weight: float
    learned_auroc: float
    prior_auroc: float


def mixed_rank(first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    """``(N,)`` ``weight · rank(first) + (1 − weight) · rank(second)``, ranks scaled to [0, 1]."""
    from scipy.stats import rankdata

    def scaled(values: np.ndarray) -> np.ndarray:
        if values.size < 2:
            return np.zeros(values.size)
        return np.asarray((rankdata(values) - 1) / (values.size - 1), dtype=np.float64)

    return weight * scaled(np.asarray(first)) + (1.0 - weight) * scaled(np.asarray(second))


SIZE_AWARE_SELF_WEIGHT = 0.25
""":func:`size_aware_rank`'s weight on the model's ``1 − P̄[label]``; the rest goes to size.

Chosen on CamVid by a rule fixed after the equal mix (0.5) had been measured and
before the other weights were (the best mean segment-level AUROC over the 13
protocol cells among 0.25, 0.5 and 0.75;
``benchmarks/wrong_ranking.py``): 0.25 gave 0.825 (lowest cell 0.79), 0.5 0.783,
0.75 0.719, the model alone 0.656 and size alone 0.831 (lowest cell 0.76)."""


def size_aware_rank(
    p_wrong: np.ndarray, sizes: np.ndarray, *, weight: float = SIZE_AWARE_SELF_WEIGHT
) -> np.ndarray:
    """``(N,)`` how likely each label is wrong, by rank in [0, 1], smaller segments first.

    ``p_wrong``: ``(N,)`` the model's own ``1 − P̄[label]``; ``sizes``: ``(N,)`` pixels.
    ``weight · rank(p_wrong) + (1 − weight) · rank(−size)``: a model trained on the
    labels it is asked to judge agrees with most of them, so its confidence alone
    hardly separates the wrong ones, while the wrong labels are mostly on small
    segments (pseudo-labels from detectors, seed models and superpixel majorities all
    miss small things). A ranking, not a probability.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    p_wrong = np.asarray(p_wrong, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if p_wrong.shape != sizes.shape or p_wrong.ndim != 1:
        raise ValueError(f"p_wrong {p_wrong.shape} and sizes {sizes.shape} must be equal (N,)")
    return mixed_rank(p_wrong, -sizes, weight)


def handover_weight(
    x: np.ndarray,
    answers: np.ndarray,
    labels: np.ndarray,
    prior: np.ndarray,
    *,
    num_classes: int,
    l2: float,
    folds: int,
    rng: np.random.Generator,
    kind: AnswerModelKind = "logistic",
) -> Handover:
    """Weigh the answer model against the prior on the answers themselves (cross-validated).

    ``x``: ``(A, D)`` the answered segments' evidence; ``answers``: ``(A,)`` their
    answers; ``labels``: ``(A,)`` their labels when asked; ``prior``: ``(A, C)`` the
    trained model's own mean probabilities then. Every answered segment gets a
    ``P(wrong)`` from an answer model (``kind``) fitted on the other folds (folds
    stratified on "wrong", shuffled by ``rng``;
    :func:`a2lc.correction.answer_model.cross_fitted_wrong`); the
    weight is the point of :data:`HANDOVER_GRID` whose rank mix
    ``w · rank(P_learned(wrong)) + (1 − w) · rank(1 − P_prior(label))`` separates the
    wrong labels from the right ones best (AUROC). Ranks, not probabilities: the
    answer model learns from answers chosen for being wrong, a shift that would
    otherwise count in its favour. Ties go to the smaller weight: the prior ranks
    until the answers show their model ranks better. Without both outcomes among the
    answers, the weight is 0.
    """
    answers = np.asarray(answers, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    count = answers.size
    if x.shape[0] != count or labels.shape != (count,) or prior.shape != (count, num_classes):
        raise ValueError(
            f"x {x.shape}, answers {answers.shape}, labels {labels.shape} and prior "
            f"{prior.shape} must describe the same {count} answers"
        )
    wrong = answers != labels
    prior_wrong = wrong_probability(prior, labels)
    if count < folds or wrong.all() or not wrong.any():
        return Handover(0.0, float("nan"), auroc(prior_wrong, wrong))
    # A fold whose training part cannot be fitted keeps the prior.
    learned_wrong = cross_fitted_wrong(
        x,
        answers,
        labels,
        prior_wrong,
        num_classes=num_classes,
        kind=kind,
        l2=l2,
        folds=folds,
        seed=int(rng.integers(2**31 - 1)),
    )
    best, best_auroc = 0.0, -np.inf
    for weight in HANDOVER_GRID:
        value = auroc(mixed_rank(learned_wrong, prior_wrong, float(weight)), wrong)
        if value > best_auroc + 1e-12:
            best, best_auroc = float(weight), value
    return Handover(best, auroc(learned_wrong, wrong), auroc(prior_wrong, wrong))


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``(N,)`` scores for ``(N,)`` bool labels (ties: half;
    scikit-learn's ``roc_auc_score``), NaN when either class is absent."""
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))
