"""The guarantees keep their promises in simulation (issue #35).

Each draw builds a region of proposals whose true chance of being right is known,
audits a uniform sample (answered from the simulated truth) and lets the guarantee
choose among the rest; the promise is checked over many draws.
"""

from __future__ import annotations

import numpy as np
import pytest

from a2lc.correction.guarantees import (
    GUARANTEES,
    conformal_p_values,
    select_bound,
    select_fdr,
)
from a2lc.errors import UnknownNameError

TARGET = 0.9
DRAWS = 1000


def _draw(
    rng: np.random.Generator, precision: np.ndarray, audits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One region: scores (higher = more confident) with right-probability ``precision``
    (sorted so that score order is precision order), a uniform audit of ``audits``.

    Returns the audited scores and outcomes, the unaudited scores and outcomes, and the
    unaudited proposals' right-probabilities."""
    size = precision.size
    truth = np.sort(precision)
    scores = np.sort(rng.random(size))
    right = rng.random(size) < truth
    audited = np.zeros(size, dtype=bool)
    audited[rng.choice(size, audits, replace=False)] = True
    rest = ~audited
    return scores[audited], right[audited], scores[rest], right[rest], truth[rest]


def _binomial_margin(rate: float, draws: int) -> float:
    return 3.0 * float(np.sqrt(rate * (1 - rate) / draws))


@pytest.mark.parametrize("precision", [0.89, 0.85])
def test_bound_applies_a_set_below_the_target_at_most_5_percent_of_the_time(
    precision: float,
) -> None:
    """True precision everywhere below the target: any non-empty applied set violates it."""
    rng = np.random.default_rng(0)
    violations = 0
    for _ in range(DRAWS):
        a_scores, a_right, t_scores, _, _ = _draw(rng, np.full(2000, precision), audits=300)
        applied = select_bound(a_scores, a_right, t_scores, target=TARGET, confidence=0.95)
        violations += bool(applied.selected.any())
    assert violations / DRAWS <= 0.05 + _binomial_margin(0.05, DRAWS)


def test_bound_when_only_the_top_is_precise_applies_no_worse_slice() -> None:
    """Precision falls with confidence (0.99 at the top, 0.6 at the bottom): a slice whose
    true precision is below the target is applied at most 5% of the time."""
    rng = np.random.default_rng(1)
    truth = np.linspace(0.6, 0.99, 2000)
    violations = applied_any = 0
    for _ in range(DRAWS):
        a_scores, a_right, t_scores, _, t_truth = _draw(rng, truth, audits=300)
        applied = select_bound(a_scores, a_right, t_scores, target=TARGET, confidence=0.95)
        if applied.selected.any():
            applied_any += 1
            # the applied slice's true precision: its proposals' chances of being right
            violations += bool(t_truth[applied.selected].mean() < TARGET)
    assert applied_any > DRAWS // 4  # not vacuous: a slice is applied in many draws
    assert violations / DRAWS <= 0.05 + _binomial_margin(0.05, DRAWS)


@pytest.mark.parametrize(
    "truth",
    [np.full(400, 0.85), np.linspace(0.3, 1.0, 400), np.linspace(0.8, 0.97, 400)],
    ids=["flat-below", "informative", "near-target"],
)
def test_fdr_keeps_the_mean_false_discovery_proportion_at_most_1_minus_target(
    truth: np.ndarray,
) -> None:
    rng = np.random.default_rng(2)
    fdp = np.zeros(DRAWS)
    selected = np.zeros(DRAWS)
    for d in range(DRAWS):
        a_scores, a_right, t_scores, t_right, _ = _draw(rng, truth, audits=40)
        applied = select_fdr(a_scores, a_right, t_scores, target=TARGET)
        chosen = applied.selected
        selected[d] = chosen.sum()
        if chosen.any():
            fdp[d] = 1.0 - t_right[chosen].mean()
    spread = float(fdp.std()) / np.sqrt(DRAWS)
    assert fdp.mean() <= (1 - TARGET) + 3 * spread
    if truth.min() >= 0.3 and truth.max() == 1.0:
        assert selected.mean() > 20  # an informative score finds the right ones


def test_conformal_p_values_count_wrong_audits_at_or_above() -> None:
    p = conformal_p_values(
        np.array([0.9, 0.8, 0.7, 0.6]),
        np.array([True, False, True, False]),
        np.array([0.95, 0.8, 0.65, 0.1]),
    )
    np.testing.assert_allclose(p, np.array([1, 2, 2, 3]) / 5)


def test_fdr_without_audits_applies_nothing_and_explains() -> None:
    applied = select_fdr(np.zeros(0), np.zeros(0, dtype=bool), np.array([0.9, 0.8]), target=0.9)
    assert not applied.selected.any()
    assert "at most 10% of the applied changes are wrong" in applied.statement
    assert applied.evidence["audited"] == 0


def test_guarantees_are_registered_and_check_their_inputs() -> None:
    assert GUARANTEES.names() == ["bound", "fdr"]
    with pytest.raises(UnknownNameError, match="valid names: bound, fdr"):
        GUARANTEES.get("proof")
    with pytest.raises(ValueError, match="must be equal"):
        select_fdr(np.zeros(3), np.zeros(2, dtype=bool), np.zeros(1), target=0.9)
    with pytest.raises(ValueError, match="finite"):
        select_bound(np.array([np.nan]), np.ones(1, dtype=bool), np.zeros(1), target=0.9)
    with pytest.raises(ValueError, match="target"):
        select_fdr(np.zeros(1), np.ones(1, dtype=bool), np.zeros(1), target=1.0)
