"""The answer model: which class a person would give a segment, learned from the answers.

Every answer is a clean label, so a classifier fitted on the answered segments'
evidence (:func:`a2lc.correction.checked.design_matrix`) estimates, for every
other segment, ``P(true class = t)``. Two kinds, both scikit-learn estimators:

* ``logistic`` (the default): multinomial logistic regression on standardised
  inputs, ridge penalty ``l2`` per sample (``C = 1 / (l2 · n)``; for two classes,
  where scikit-learn fits one weight vector instead of two, ``C`` doubles so the
  penalty is the same);
* ``boosting``: histogram gradient boosting (nonlinear in the evidence).

Both give ``(M, C)`` probabilities over *all* ``C`` classes: a class no answer has
given gets probability 0. Deterministic for the same inputs.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

AnswerModelKind = Literal["logistic", "boosting"]
"""Which classifier models the answers (:func:`fit_answer_model`)."""
ANSWER_MODEL_KINDS: tuple[AnswerModelKind, ...] = ("logistic", "boosting")

L2 = 1e-2
"""Ridge penalty of the logistic model (on standardised features, per sample)."""
MAX_ITERATIONS = 500
"""L-BFGS iterations of the logistic model."""
TOL = 1e-6
"""Gradient tolerance of L-BFGS (scikit-learn's default 1e-4 left probabilities up to
2e-3 from the optimum on answer-sized problems; 1e-6 within 1e-3, at about the same CPU)."""


@dataclass(frozen=True)
class AnswerModel:
    """A fitted answer model: ``estimator`` (scikit-learn), the answer classes it saw
    ``(K,)`` and the number of classes ``C`` of the workspace."""

    estimator: Any
    classes: np.ndarray
    num_classes: int

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """``(M, C)`` class probabilities of ``(M, D)`` inputs (unseen classes: 0)."""
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros((x.shape[0], self.num_classes))
        if x.shape[0]:
            out[:, self.classes] = self.estimator.predict_proba(x)
        return out


def fit_answer_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int,
    kind: AnswerModelKind = "logistic",
    l2: float = L2,
    seed: int = 0,
) -> AnswerModel:
    """Fit an answer model on ``(N, D)`` evidence and ``(N,)`` answers in ``[0, C)``.

    ``seed`` only matters for ``boosting``. Raises ``ValueError`` for bad shapes,
    answers outside ``[0, num_classes)`` or fewer than two distinct answers.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be (N, D) and y (N,), got {x.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"answers must be in [0, {num_classes}), got {y.min()}..{y.max()}")
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError(f"an answer model needs at least two distinct answers, got {classes}")
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        strength = 1.0 / (l2 * y.size) if l2 > 0 else np.inf
        if classes.size == 2:
            strength *= 2.0  # one weight vector for two classes: the same penalty as two
        estimator = make_pipeline(
            StandardScaler(), LogisticRegression(C=strength, max_iter=MAX_ITERATIONS, tol=TOL)
        )
    elif kind == "boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        estimator = HistGradientBoostingClassifier(random_state=seed)
    else:
        raise ValueError(f"answer model kind must be one of {ANSWER_MODEL_KINDS}, got {kind!r}")
    with _fitting():
        estimator.fit(x, y)
    return AnswerModel(estimator, classes, num_classes)


def fit_logistic(x: np.ndarray, y: np.ndarray, *, num_classes: int, l2: float = L2) -> AnswerModel:
    """The logistic answer model (:func:`fit_answer_model` with ``kind="logistic"``)."""
    return fit_answer_model(x, y, num_classes=num_classes, kind="logistic", l2=l2)


def cross_fitted_wrong(
    x: np.ndarray,
    answers: np.ndarray,
    labels: np.ndarray,
    fallback: np.ndarray,
    *,
    num_classes: int,
    kind: AnswerModelKind,
    l2: float,
    folds: int,
    seed: int,
) -> np.ndarray:
    """``(A,)`` out-of-fold ``P(wrong) = 1 − P(label)`` of every answered segment.

    ``x``: ``(A, D)`` evidence; ``answers``, ``labels``: ``(A,)`` the answer and the
    label when asked; ``fallback``: ``(A,)`` the value kept for a fold whose training
    part holds fewer than two distinct answers. Folds: scikit-learn's
    ``StratifiedKFold`` on "the answer changed the label" (shuffled with ``seed``), so
    every fold holds both outcomes where it can.
    """
    from sklearn.model_selection import StratifiedKFold

    answers = np.asarray(answers, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    wrong = answers != labels
    out = np.asarray(fallback, dtype=np.float64).copy()
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with _fitting():
        splits = list(splitter.split(x, wrong))
    for train, held in splits:
        if np.unique(answers[train]).size < 2:
            continue
        model = fit_answer_model(
            x[train], answers[train], num_classes=num_classes, kind=kind, l2=l2, seed=seed
        )
        probabilities = model.probabilities(x[held])
        out[held] = 1.0 - _own(probabilities, labels[held])
    return out


def _own(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(M,)`` probability of each row's label (labels outside ``[0, C)``: 0)."""
    labelled = (labels >= 0) & (labels < probabilities.shape[1])
    own = probabilities[np.arange(labels.size), np.where(labelled, labels, 0)]
    return np.where(labelled, own, 0.0)


@contextlib.contextmanager
def _fitting() -> Iterator[None]:
    """Hold BLAS and OpenMP to the process's thread count (:func:`a2lc.runtime.cpu_threads`):
    on a loaded 2-core machine a 2,285-answer fit took 6.3 CPU s with two threads and 0.7
    with one. Silence scikit-learn's convergence and small-class warnings (the results
    are checked by the callers' tests; the warnings would flood a round's log)."""
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    from a2lc.runtime import cpu_threads

    with warnings.catch_warnings(), threadpool_limits(limits=cpu_threads()):
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        yield
