"""The checked corrector: label-aware proposals, applied only where an audit proves them right.

Each round:

1. A multinomial logistic model (:mod:`a2lc.correction.answer_model`), trained on
   every answer so far (confirmations included; each answer with the features of
   the round it was asked in), maps a segment's current label, mean
   probabilities, margin, size and encoder embedding to the class an annotator
   would give it.
2. For every segment that can still change, it *proposes* its most likely class
   where that differs from the current label (with probability at least
   :data:`MIN_PROPOSAL_CONFIDENCE`). Proposals are grouped by (current → proposed).
3. A share of the round's budget (``audit_share``) is spent on a random sample of
   proposals, drawn uniformly within the largest groups (:func:`allocate_audits`),
   so the audited answers are distributed like the segments a group would change.
   Audited segments are ordinary queries.
4. Once answered, a group opens only if the one-sided 95% Clopper–Pearson lower
   bound of its audited precision is at least ``min_precision`` (0.9); only open
   groups' unqueried proposals are applied. No open group: nothing changes.

Pure functions on arrays; ``M`` segments, ``C`` classes, ``E`` embedding width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from a2lc.correction.answer_model import L2
from a2lc.data.sample import IGNORE_INDEX

MIN_PROPOSAL_CONFIDENCE = 0.5
"""A proposal needs at least this model probability for its class."""
MIN_AUDITS_PER_GROUP = 30
"""Audits per audited group: with all 30 right, the 95% lower bound is 0.905."""


@dataclass(frozen=True)
class CheckedConfig:
    """Options of the checked corrector (saved with the run)."""

    audit_share: float = 0.1
    """Share of each round's budget spent auditing proposals."""
    min_precision: float = 0.9
    """A group opens when its audited precision's lower bound reaches this."""
    confidence: float = 0.95
    """One-sided confidence level of that lower bound."""
    min_audits: int = MIN_AUDITS_PER_GROUP
    min_proposal_confidence: float = MIN_PROPOSAL_CONFIDENCE
    l2: float = L2


def design_matrix(
    labels: np.ndarray, probabilities: np.ndarray, sizes: np.ndarray, embeddings: np.ndarray
) -> np.ndarray:
    """``(M, 2C + 3 + E)`` float64 inputs of the corrector.

    ``labels``: ``(M,)`` current majority label (255: none); ``probabilities``:
    ``(M, C)`` mean model probabilities; ``sizes``: ``(M,)`` pixels;
    ``embeddings``: ``(M, E)`` mask-pooled encoder features (``E`` may be 0).
    Columns: one-hot label, probabilities, margin (top-1 − top-2), log size, the
    probability of the current label, the embedding.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    count, num_classes = probabilities.shape
    labels = np.asarray(labels, dtype=np.int64)
    onehot = np.zeros((count, num_classes))
    labelled = (labels >= 0) & (labels < num_classes)
    onehot[np.flatnonzero(labelled), labels[labelled]] = 1.0
    top = np.sort(probabilities, axis=1)
    margin = top[:, -1] - (top[:, -2] if num_classes > 1 else 0.0)
    own = np.where(labelled, probabilities[np.arange(count), np.where(labelled, labels, 0)], 0.0)
    return np.hstack(
        [
            onehot,
            probabilities,
            margin[:, None],
            np.log1p(np.asarray(sizes, dtype=np.float64))[:, None],
            own[:, None],
            np.asarray(embeddings, dtype=np.float64).reshape(count, -1),
        ]
    )


class Proposals(NamedTuple):
    """``rows``: ``(P,)`` segments (rows of the inputs) with a proposal; ``current``,
    ``proposed``: ``(P,)`` classes; ``confidence``: ``(P,)`` model probability."""

    rows: np.ndarray
    current: np.ndarray
    proposed: np.ndarray
    confidence: np.ndarray


def propose(
    probabilities: np.ndarray,
    current: np.ndarray,
    *,
    eligible: np.ndarray,
    min_confidence: float = MIN_PROPOSAL_CONFIDENCE,
) -> Proposals:
    """Proposals where the model's class differs from ``current`` (``(M,)``; 255: none).

    ``probabilities``: ``(M, C)`` from an answer model
    (:meth:`a2lc.correction.answer_model.AnswerModel.probabilities`);
    ``eligible``: ``(M,)`` bool, segments that may change (not queried, never manual).
    """
    probabilities = np.asarray(probabilities)
    current = np.asarray(current, dtype=np.int64)
    best = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(best.size), best]
    chosen = (
        np.asarray(eligible, dtype=bool)
        & (current != IGNORE_INDEX)
        & (best != current)
        & (confidence >= min_confidence)
    )
    rows = np.flatnonzero(chosen)
    return Proposals(rows, current[rows], best[rows], confidence[rows])


def group_ids(current: np.ndarray, proposed: np.ndarray, num_classes: int) -> np.ndarray:
    """``(P,)`` one integer per (current → proposed) group: ``current · C + proposed``."""
    return np.asarray(current, dtype=np.int64) * num_classes + np.asarray(proposed, dtype=np.int64)


def allocate_audits(
    groups: np.ndarray, *, budget: int, min_per_group: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices into ``groups`` ``(P,)`` to audit: uniform samples within the largest groups.

    ``budget // min_per_group`` groups (at least one) are audited, largest first,
    the budget split evenly between them (capped by their sizes, the rest passed
    on); within a group every proposal is equally likely to be drawn.
    """
    groups = np.asarray(groups, dtype=np.int64)
    if budget <= 0 or groups.size == 0:
        return np.zeros(0, dtype=np.int64)
    names, counts = np.unique(groups, return_counts=True)
    order = np.lexsort((names, -counts))  # largest first, ties by group id
    slots = max(1, budget // max(1, min_per_group))
    chosen = order[:slots]
    quota = np.zeros(chosen.size, dtype=np.int64)
    left = budget
    open_groups = list(range(chosen.size))
    while left > 0 and open_groups:
        share = max(1, left // len(open_groups))
        still: list[int] = []
        for i in open_groups:
            take = min(share, int(counts[chosen[i]]) - int(quota[i]), left)
            quota[i] += take
            left -= take
            if quota[i] < counts[chosen[i]]:
                still.append(i)
            if left == 0:
                break
        open_groups = still
    picked = []
    for i, g in enumerate(chosen):
        members = np.flatnonzero(groups == names[g])
        picked.append(rng.choice(members, size=int(quota[i]), replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def precision_lower_bound(correct: int, total: int, *, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson lower bound of a proportion (0 without evidence)."""
    if total <= 0 or correct <= 0:
        return 0.0
    from scipy.stats import beta

    return float(beta.ppf(1.0 - confidence, correct, total - correct + 1))


class GroupEvidence(NamedTuple):
    """Per audited group: ``group`` id, ``audited``, ``correct``, ``estimate``, ``lower``."""

    group: np.ndarray
    audited: np.ndarray
    correct: np.ndarray
    estimate: np.ndarray
    lower: np.ndarray


def audit_evidence(
    groups: np.ndarray, correct: np.ndarray, *, confidence: float = 0.95
) -> GroupEvidence:
    """Audited precision per group from ``(A,)`` audited groups and ``(A,)`` bool outcomes."""
    groups = np.asarray(groups, dtype=np.int64)
    correct = np.asarray(correct, dtype=bool)
    names = np.unique(groups)
    audited = np.asarray([int((groups == g).sum()) for g in names], dtype=np.int64)
    right = np.asarray([int(correct[groups == g].sum()) for g in names], dtype=np.int64)
    estimate = np.divide(right, audited, out=np.zeros(names.size), where=audited > 0)
    lower = np.asarray(
        [
            precision_lower_bound(int(k), int(n), confidence=confidence)
            for k, n in zip(right, audited, strict=True)
        ]
    )
    return GroupEvidence(names, audited, right, estimate, lower)


def open_groups(evidence: GroupEvidence, *, min_precision: float) -> np.ndarray:
    """Group ids whose lower bound reaches ``min_precision``."""
    return np.asarray(evidence.group[evidence.lower >= min_precision], dtype=np.int64)
