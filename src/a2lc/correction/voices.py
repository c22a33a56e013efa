"""Voices: independent views on whether a proposed correction is right, and their combination.

The corrector proposes, for a segment labelled ``y``, the class ``t`` its answer
model finds most likely. Each voice says, from its own evidence, how much it
supports ``t`` for that segment (a number in [0, 1]):

* ``answer``: the answer model's (recalibrated) ``P(t)``;
* ``round``: the round model's own mean softmax ``P̄(t)`` over the segment (its argmax
  agreeing with ``t`` shows as a high value);
* ``neighbours``: among the ``k`` answered segments nearest in the encoder's
  embedding (cosine) that carried the same label ``y`` when asked, the share answered
  ``t`` (the paper's propagation idea, checked by the audit);
* ``image``: among the answered segments of the same image that carried ``y``, the
  share answered ``t``.

Shares are smoothed, ``(m + ½) / (n + 1)``, so no evidence reads ½. :func:`combine`
learns from audited proposals of earlier rounds which combinations are right
(a logistic regression on the voices' logits); a proposal is never scored by a
model that saw its own audit. Registered by name (:data:`VOICES`).

Pure functions on arrays; ``N`` segments, ``C`` classes, ``E`` embedding
dimensions, ``A`` answered segments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from a2lc.registry import Registry

NEIGHBOURS = 5
"""Answered segments the ``neighbours`` voice looks at."""

MIN_TRAINING = 20
"""Fewer audited proposals than this (or only one outcome): :func:`combine` trusts the
first voice alone."""


@dataclass(frozen=True)
class VoiceInputs:
    """What the voices read, for ``N`` segments of one round.

    ``labels``: ``(N,)`` current labels; ``proposed``: ``(N,)`` the proposed class;
    ``answer_probabilities``: ``(N, C)``; ``round_probabilities``: ``(N, C)``;
    ``embedding``: ``(N, E)`` or None; ``image``: ``(N,)`` image index;
    ``answered``: ``(A,)`` rows of answered segments (none of them a proposal being
    judged); ``answered_label``: ``(A,)`` their label when asked; ``answered_class``:
    ``(A,)`` the answer.
    """

    labels: np.ndarray
    proposed: np.ndarray
    answer_probabilities: np.ndarray
    round_probabilities: np.ndarray
    embedding: np.ndarray | None
    image: np.ndarray
    answered: np.ndarray
    answered_label: np.ndarray
    answered_class: np.ndarray

    def __post_init__(self) -> None:
        n = self.labels.shape[0]
        for name in ("proposed", "image"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be ({n},), got {getattr(self, name).shape}")
        for name in ("answer_probabilities", "round_probabilities"):
            if getattr(self, name).ndim != 2 or getattr(self, name).shape[0] != n:
                raise ValueError(f"{name} must be ({n}, C), got {getattr(self, name).shape}")
        a = self.answered.shape
        if self.answered_label.shape != a or self.answered_class.shape != a or len(a) != 1:
            raise ValueError("answered, answered_label and answered_class must be equal (A,)")


def _taken(probabilities: np.ndarray, proposed: np.ndarray) -> np.ndarray:
    rows = np.arange(proposed.size)
    return np.asarray(probabilities[rows, np.clip(proposed, 0, probabilities.shape[1] - 1)])


def answer_voice(inputs: VoiceInputs) -> np.ndarray:
    """``(N,)`` the answer model's probability of the proposed class."""
    return _taken(inputs.answer_probabilities, inputs.proposed)


def round_voice(inputs: VoiceInputs) -> np.ndarray:
    """``(N,)`` the round model's mean probability of the proposed class."""
    return _taken(inputs.round_probabilities, inputs.proposed)


def _share(agree: np.ndarray, seen: np.ndarray) -> np.ndarray:
    return np.asarray((agree + 0.5) / (seen + 1.0))


def neighbours_voice(inputs: VoiceInputs, *, k: int = NEIGHBOURS) -> np.ndarray:
    """``(N,)`` share of the ``k`` nearest answered segments with the same label answered as
    proposed (cosine distance in the embedding; ½ without an embedding or neighbours)."""
    from sklearn.neighbors import NearestNeighbors

    n = inputs.labels.size
    agree = np.zeros(n)
    seen = np.zeros(n)
    if inputs.embedding is None or inputs.answered.size == 0:
        return _share(agree, seen)
    for label in np.unique(inputs.labels):  # one search per class, not per segment
        rows = np.flatnonzero(inputs.labels == label)
        same = inputs.answered_label == label
        if not same.any():
            continue
        donors = inputs.answered[same]
        search = NearestNeighbors(n_neighbors=min(k, donors.size), metric="cosine")
        search.fit(inputs.embedding[donors])
        _, nearest = search.kneighbors(inputs.embedding[rows])
        given = inputs.answered_class[same][nearest]  # (rows, k)
        agree[rows] = (given == inputs.proposed[rows, None]).sum(axis=1)
        seen[rows] = nearest.shape[1]
    return _share(agree, seen)


def _count(keys: np.ndarray, table: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(K,)`` the count of each key in the sorted ``table`` (0 where absent)."""
    if table.size == 0:
        return np.zeros(keys.size)
    at = np.clip(np.searchsorted(table, keys), 0, table.size - 1)
    return np.where(table[at] == keys, counts[at], 0).astype(np.float64)


def image_voice(inputs: VoiceInputs) -> np.ndarray:
    """``(N,)`` share of the answered segments of the same image and label answered as
    proposed."""
    classes = int(
        max(
            inputs.answer_probabilities.shape[1],
            int(inputs.labels.max(initial=0)) + 1,
            int(inputs.answered_label.max(initial=0)) + 1,
            int(inputs.answered_class.max(initial=0)) + 1,
            int(inputs.proposed.max(initial=0)) + 1,
        )
    )
    image = inputs.image.astype(np.int64)
    group = image[inputs.answered] * classes + inputs.answered_label
    mine = image * classes + inputs.labels
    groups, seen_per_group = np.unique(group, return_counts=True)
    pairs, agree_per_pair = np.unique(group * classes + inputs.answered_class, return_counts=True)

    seen = _count(mine, groups, seen_per_group)
    agree = _count(mine * classes + inputs.proposed, pairs, agree_per_pair)
    return _share(agree, seen)


Voice = Callable[[VoiceInputs], np.ndarray]

VOICES: Registry[Voice] = Registry("voice")
VOICES.add("answer", answer_voice)
VOICES.add("round", round_voice)
VOICES.add("neighbours", neighbours_voice)
VOICES.add("image", image_voice)


def voice_matrix(inputs: VoiceInputs, names: tuple[str, ...]) -> np.ndarray:
    """``(N, V)`` the named voices, in order (unknown names raise with the valid ones)."""
    return np.stack([VOICES.get(name)(inputs) for name in names], axis=1)


def _logits(values: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(values, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p) - np.log1p(-p))


@dataclass(frozen=True)
class Combined:
    """``scores``: ``(N,)`` how likely each proposal is right (higher: more); ``learned``:
    whether they come from a model of audited proposals (else the first voice alone);
    ``weights``: ``(V,)`` that model's coefficients on the voices' logits (empty if none)."""

    scores: np.ndarray
    learned: bool
    weights: np.ndarray


def combine(voices: np.ndarray, *, training: np.ndarray, training_right: np.ndarray) -> Combined:
    """Score ``(N, V)`` voices by a logistic regression fitted on ``(T, V)`` audited voices.

    ``training_right``: ``(T,)`` whether each audited proposal was right. The training
    proposals must not include the ones being scored (the caller passes earlier rounds'
    audits). With fewer than :data:`MIN_TRAINING` or a single outcome, the first voice.
    """
    from sklearn.linear_model import LogisticRegression

    voices = np.asarray(voices, dtype=np.float64)
    training = np.asarray(training, dtype=np.float64)
    right = np.asarray(training_right, dtype=bool)
    if voices.ndim != 2 or (training.size and training.shape[1] != voices.shape[1]):
        raise ValueError(f"voices {voices.shape} and training {training.shape} must be (·, V)")
    if right.shape != (training.shape[0],):
        raise ValueError(f"training_right {right.shape} must be ({training.shape[0]},)")
    if right.size < MIN_TRAINING or right.all() or not right.any():
        return Combined(voices[:, 0].copy(), False, np.zeros(0))
    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit(_logits(training), right)
    scores = model.predict_proba(_logits(voices))[:, 1] if voices.shape[0] else np.zeros(0)
    return Combined(np.asarray(scores), True, np.asarray(model.coef_[0]))
