"""Guarantees: from audited proposals to the set of changes that may be applied.

A corrector proposes changes and people answer a uniform random sample of them
(the *audit*). A guarantee turns that evidence into the set of unaudited
proposals that may be applied, and a sentence saying what is promised about it:

* ``bound``: the applied set is the largest most-confident slice whose precision's
  one-sided Clopper–Pearson lower bound reaches the target, by fixed-sequence
  testing (:func:`proven_threshold`): the probability that
  the applied set's precision is below the target is at most ``1 − confidence``.
* ``fdr``: conformal selection (Jin & Candès, "Selection by prediction with
  conformal p-values", JMLR 2023): every unaudited proposal gets a conformal
  p-value against "this proposal is wrong" from the audited ones, and
  Benjamini–Hochberg at level ``1 − target`` selects; the *expected* share of wrong
  changes among the applied ones is at most ``1 − target``. It needs the audited
  and the unaudited proposals to be exchangeable (the audit a uniform sample of the
  same proposals, scored by a function that did not see the audit), so its
  evidence is one round's, never pooled.

Both take scores where higher means "more likely right" and never look at the
unaudited proposals' outcomes. Registered by name (:data:`GUARANTEES`).
Pure functions on arrays; ``S`` audited proposals, ``M`` unaudited ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from a2lc.correction.checked import precision_lower_bound
from a2lc.registry import Registry

GuaranteeName = Literal["bound", "fdr"]


@dataclass(frozen=True)
class Applied:
    """What a guarantee allows: ``selected`` ``(M,)`` bool over the unaudited proposals;
    ``statement``: what is promised, in one sentence; ``evidence``: the numbers behind it
    (JSON-friendly), stored with every change."""

    selected: np.ndarray
    statement: str
    evidence: dict[str, Any]


def bound_statement(target: float, confidence: float) -> str:
    """What ``bound`` promises about the applied set, in one sentence."""
    return (
        f"the chance that these changes are right less than {100 * target:.0f}% of "
        f"the time is at most {100 * (1 - confidence):.0f}% (one-sided Clopper–Pearson bound "
        "on a random audit)"
    )


def fdr_statement(target: float) -> str:
    """What ``fdr`` promises about the applied set, in one sentence."""
    return (
        f"on average at most {100 * (1 - target):.0f}% of the applied changes are wrong "
        "(false-discovery rate: Benjamini–Hochberg over conformal p-values from a uniform "
        "audit of the same proposals)"
    )


def _check(scores: np.ndarray, right: np.ndarray, test: np.ndarray) -> None:
    if scores.ndim != 1 or right.shape != scores.shape or test.ndim != 1:
        raise ValueError(
            f"audited scores {scores.shape} and outcomes {right.shape} must be equal (S,), "
            f"unaudited scores {test.shape} must be (M,)"
        )
    if not (np.isfinite(scores).all() and np.isfinite(test).all()):
        raise ValueError("scores must be finite")


def conformal_p_values(
    audited_scores: np.ndarray, audited_right: np.ndarray, test_scores: np.ndarray
) -> np.ndarray:
    """``(M,)`` conformal p-values of "proposal j is wrong" for ``(M,)`` unaudited scores.

    ``audited_scores``: ``(S,)``; ``audited_right``: ``(S,)`` bool. ``p_j = (1 + #{i
    audited, wrong, score_i ≥ score_j}) / (S + 1)``: the deterministic (conservative)
    form of Jin & Candès' p-value with the clipped score for a binary outcome; it is
    super-uniform for a wrong proposal exchangeable with the audited ones.
    """
    scores = np.asarray(audited_scores, dtype=np.float64)
    right = np.asarray(audited_right, dtype=bool)
    test = np.asarray(test_scores, dtype=np.float64)
    _check(scores, right, test)
    wrong_scores = np.sort(scores[~right])
    # wrong audited proposals scoring at least as high as each test proposal
    at_least = wrong_scores.size - np.searchsorted(wrong_scores, test, side="left")
    return np.asarray((1.0 + at_least) / (scores.size + 1.0))


def select_fdr(
    audited_scores: np.ndarray,
    audited_right: np.ndarray,
    test_scores: np.ndarray,
    *,
    target: float,
    confidence: float = 0.95,
) -> Applied:
    """Conformal selection: Benjamini–Hochberg at level ``1 − target`` (see the module doc).

    ``confidence`` is unused (the promise is on the expectation); kept so every guarantee
    is called alike.
    """
    # Benjamini–Hochberg is scipy's; the conformal p-value is the three lines above.
    # mapie.risk_control was considered: it controls precision by Learn-then-Test over
    # one threshold (family-wise), not the per-proposal selection with FDR control
    # this is, and would be a new dependency for it.
    from scipy.stats import false_discovery_control

    del confidence
    _validate_target(target)
    p = conformal_p_values(audited_scores, audited_right, test_scores)
    level = 1.0 - target
    selected = (
        false_discovery_control(p, method="bh") <= level if p.size else np.zeros(0, dtype=bool)
    )
    right = np.asarray(audited_right, dtype=bool)
    return Applied(
        np.asarray(selected, dtype=bool),
        fdr_statement(target),
        {
            "guarantee": "fdr",
            "target": target,
            "audited": int(right.size),
            "right": int(right.sum()),
            "selected": int(np.sum(selected)),
            "candidates": int(p.size),
            "smallest_p": float(p.min()) if p.size else None,
        },
    )


def select_bound(
    audited_scores: np.ndarray,
    audited_right: np.ndarray,
    test_scores: np.ndarray,
    *,
    target: float,
    confidence: float = 0.95,
    first_test: int = 30,
    growth: float = 1.5,
) -> Applied:
    """The largest proven most-confident slice (see the module doc and
    :func:`proven_threshold`, which this calls with one round's evidence)."""
    _validate_target(target)
    scores = np.asarray(audited_scores, dtype=np.float64)
    right = np.asarray(audited_right, dtype=bool)
    test = np.asarray(test_scores, dtype=np.float64)
    _check(scores, right, test)
    chosen = proven_threshold(
        Evidence(scores, right, np.full(scores.size, -np.inf)),
        min_confidence=-np.inf,
        min_precision=target,
        confidence=confidence,
        first_test=first_test,
        growth=growth,
    )
    return Applied(
        test >= chosen.threshold,
        bound_statement(target, confidence),
        {
            "guarantee": "bound",
            "target": target,
            "audited": chosen.sampled,
            "right": chosen.correct,
            "lower_bound": chosen.lower,
            "tests": chosen.tests,
            "threshold": chosen.threshold if np.isfinite(chosen.threshold) else None,
        },
    )


class Evidence(NamedTuple):
    """Sampled answers inside corrector regions, pooled over rounds.

    ``confidence``: ``(S,)`` the proposal's confidence when it was made (by a model
    that had not seen the answer); ``correct``: ``(S,)`` whether the answer was the
    proposed class; ``floor``: ``(S,)`` the confidence of the least confident
    proposal in that round's region (a slice below it was not sampled that round).
    """

    confidence: np.ndarray
    correct: np.ndarray
    floor: np.ndarray

    @classmethod
    def empty(cls) -> Evidence:
        return cls(np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0))

    @classmethod
    def concatenate(cls, parts: list[Evidence]) -> Evidence:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.confidence for p in parts]).astype(np.float64),
            np.concatenate([p.correct for p in parts]).astype(bool),
            np.concatenate([p.floor for p in parts]).astype(np.float64),
        )


class Slice(NamedTuple):
    """The outcome of :func:`proven_threshold`.

    ``threshold``: proposals at or above it may be applied (``inf``: none);
    ``sampled``, ``correct``: the evidence of the accepted slice (of the last slice
    tested when none was accepted); ``lower``: its precision's lower bound;
    ``tests``: how many slices were tested.
    """

    threshold: float
    sampled: int
    correct: int
    lower: float
    tests: int

    @property
    def estimate(self) -> float:
        return self.correct / self.sampled if self.sampled else float("nan")


def proven_threshold(
    evidence: Evidence,
    *,
    min_confidence: float,
    min_precision: float,
    confidence: float,
    first_test: int,
    growth: float,
) -> Slice:
    """The lowest confidence threshold whose slice is proven precise, by fixed-sequence testing.

    Candidate slices are "proposals with confidence ≥ c" for ``c ≥ min_confidence``
    (the current round's region floor). Sorted by confidence, the k-th most
    confident sampled answer defines the k-th candidate; the tested ones hold
    ``first_test``, ``first_test · growth``, … sampled answers (evidence from rounds
    whose region floor lies above ``c`` is left out of that test). Tests run from
    the most confident slice down and stop at the first whose one-sided
    Clopper–Pearson bound falls below ``min_precision``; the last passing slice is
    accepted. Stopping at the first failure keeps the chance of accepting any slice
    whose true precision is below ``min_precision`` at most ``1 − confidence``
    (fixed-sequence testing), as long as the sampled answers are uniform within
    every slice.
    """
    usable = evidence.confidence >= min_confidence
    conf = evidence.confidence[usable]
    correct = evidence.correct[usable]
    floor = evidence.floor[usable]
    order = np.argsort(-conf, kind="stable")
    conf, correct, floor = conf[order], correct[order], floor[order]
    accepted = Slice(float("inf"), 0, 0, 0.0, 0)
    last = accepted
    k = float(first_test)
    tests = 0
    while int(k) <= conf.size:
        threshold = float(conf[int(k) - 1])
        inside = (conf >= threshold) & (floor <= threshold)
        n = int(inside.sum())
        right = int(correct[inside].sum())
        lower = precision_lower_bound(right, n, confidence=confidence)
        tests += 1
        last = Slice(threshold, n, right, lower, tests)
        if lower < min_precision:
            break
        accepted = last
        k = max(k + 1, k * growth)
    if accepted.sampled:
        return accepted._replace(tests=tests)
    return Slice(float("inf"), last.sampled, last.correct, last.lower, tests)


def _validate_target(target: float) -> None:
    if not 0.0 < target < 1.0:
        raise ValueError(f"the target precision must be in (0, 1), got {target}")


Guarantee = Callable[..., Applied]
"""``(audited_scores (S,), audited_right (S,), test_scores (M,), *, target, confidence)
→ Applied``."""

GUARANTEES: Registry[Guarantee] = Registry("guarantee")
GUARANTEES.add("bound", select_bound)
GUARANTEES.add("fdr", select_fdr)
