from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from a2lc.errors import DataError
from a2lc.metrics import iou_per_class
from a2lc.pseudo_labels.noise import (
    CAMVID_GROUNDED_SAM_TARGET,
    confusion_rows,
    default_target,
    draw_correlated_labels,
    draw_labels,
    expected_confusion,
    flipped_share,
    load_target,
    lookalike_classes,
    lookalike_rows,
    majority_iou,
    realised_confusion,
    solve_flip_rates,
    target_vector,
)

NUM_CLASSES = 5


def pool(
    num_segments: int = 3000, *, seed: int = 0, sizes: tuple[int, int] = (50, 2000)
) -> tuple[np.ndarray, np.ndarray]:
    """``(S, C)`` ground-truth histograms of impure segments and their majority classes.

    Segment sizes are log-uniform in ``sizes`` (pixels).
    """
    rng = np.random.default_rng(seed)
    frequency = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    majority = rng.choice(NUM_CLASSES, size=num_segments, p=frequency)
    low, high = np.log(sizes[0]), np.log(sizes[1])
    pixels = np.exp(rng.uniform(low, high, size=num_segments))
    impurity = rng.dirichlet(np.ones(NUM_CLASSES), size=num_segments) * 0.2
    share = impurity + 0.8 * np.eye(NUM_CLASSES)[majority]
    histograms = np.round(share * pixels[:, None]).astype(np.int64)
    return histograms, majority


def seed_confusion() -> np.ndarray:
    confusion = np.diag([900, 800, 700, 600, 500])
    confusion[0, 1] = 30  # class 0 is confused only with 1 and 2
    confusion[0, 2] = 10
    confusion[1, 0] = 50
    confusion[2, 3] = 5
    confusion[3, 2] = 5
    return confusion  # row 4 has no confusion at all


def test_confusion_rows_are_off_diagonal_and_uniform_where_empty() -> None:
    rows = confusion_rows(seed_confusion())
    np.testing.assert_allclose(rows.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.diag(rows), 0.0)
    np.testing.assert_allclose(rows[0], [0, 0.75, 0.25, 0, 0])
    np.testing.assert_allclose(rows[1], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(rows[4], [0.25, 0.25, 0.25, 0.25, 0])


def test_rates_are_solved_to_the_target() -> None:
    histograms, majority = pool()
    rows = confusion_rows(seed_confusion())
    ceiling = majority_iou(histograms, majority)
    target = np.array([0.6, 0.55, 0.5, 0.4, 0.3])
    assert (target < ceiling).all()
    solved = solve_flip_rates(histograms, majority, rows, target)
    assert solved.converged
    assert not solved.capped
    assert not solved.unreachable
    np.testing.assert_allclose(solved.expected_iou, target, atol=1e-8)
    # The expected IoU really is the IoU of the expected confusion under these rates.
    np.testing.assert_allclose(
        iou_per_class(expected_confusion(histograms, majority, solved.rates, rows)), target
    )
    assert (solved.rates > 0).all()
    assert (solved.rates < 1).all()


def test_target_above_the_ceiling_is_capped_and_missing_classes_keep_their_labels() -> None:
    histograms, majority = pool()
    rows = confusion_rows(seed_confusion())
    ceiling = majority_iou(histograms, majority)
    target = np.array([0.99, 0.5, np.nan, 0.4, 0.3])
    solved = solve_flip_rates(histograms, majority, rows, target)
    assert solved.capped == (0,)
    assert solved.target[0] == pytest.approx(ceiling[0])
    assert solved.rates[0] == 0.0
    assert solved.rates[2] == 0.0
    assert np.isnan(solved.target[2])


def test_drawing_is_deterministic_exact_in_mass_and_follows_the_rows() -> None:
    histograms, majority = pool()
    sizes = histograms.sum(axis=1)
    rows = confusion_rows(seed_confusion())
    rates = np.array([0.3, 0.2, 0.1, 0.5, 0.4])

    def draw(seed: int) -> np.ndarray:
        return draw_labels(majority, rates, rows, sizes=sizes, rng=np.random.default_rng(seed))

    a, b, c = draw(7), draw(7), draw(8)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    largest = sizes.max()
    for k in range(NUM_CLASSES):
        members = majority == k
        flipped = members & (a != k)
        # The flipped pixel mass is the solved share of the class's mass, up to half a segment.
        assert abs(sizes[flipped].sum() - rates[k] * sizes[members].sum()) <= largest / 2
        # Confusions only ever land on classes that row k allows, in row k's proportions.
        assert set(np.unique(a[flipped]).tolist()) <= set(np.flatnonzero(rows[k]).tolist())
        received = np.bincount(a[flipped], weights=sizes[flipped], minlength=NUM_CLASSES)
        assert np.abs(received - rows[k] * sizes[flipped].sum()).max() <= largest
    assert set(np.unique(a[(majority == 0) & (a != 0)]).tolist()) == {1, 2}
    np.testing.assert_allclose(
        flipped_share(majority, a, sizes, num_classes=NUM_CLASSES), rates, atol=0.01
    )


def test_realised_iou_lands_near_the_target_even_with_a_few_huge_segments() -> None:
    # Segment sizes spread over three orders of magnitude: drawing a share of each class's
    # segments *by count* misses the target by far more than 5 points on some draws.
    histograms, majority = pool(600, sizes=(10, 20000))
    sizes = histograms.sum(axis=1)
    rows = confusion_rows(seed_confusion())
    target = np.array([0.6, 0.5, 0.5, 0.35, 0.2])
    solved = solve_flip_rates(histograms, majority, rows, target)
    assert not solved.unreachable
    worst = 0.0
    for seed in range(10):
        labels = draw_labels(
            majority, solved.rates, rows, sizes=sizes, rng=np.random.default_rng(seed)
        )
        realised = iou_per_class(realised_confusion(histograms, labels))
        worst = max(worst, float(np.abs(realised - target).max()))
    assert worst < 0.05


def test_targets_that_other_classes_flips_prevent_are_reported() -> None:
    histograms, majority = pool()
    rows = confusion_rows(seed_confusion())
    # Class 1 must lose many segments, and row 1 sends them all to class 0: class 0 then
    # has more false positives than an IoU of 0.7 allows even with no flips of its own.
    target = np.array([0.7, 0.45, 0.6, 0.35, 0.2])
    solved = solve_flip_rates(histograms, majority, rows, target)
    assert 0 in solved.unreachable
    assert solved.rates[0] == 0.0
    assert solved.expected_iou[0] < 0.7 - 0.05
    assert 1 not in solved.unreachable


def test_segments_without_ground_truth_stay_uncovered() -> None:
    majority = np.array([0, -1, 1])
    labels = draw_labels(
        majority, np.zeros(2), np.eye(2)[::-1], sizes=np.ones(3), rng=np.random.default_rng(0)
    )
    assert labels.tolist() == [0, 255, 1]


def test_target_files(tmp_path: Path) -> None:
    names = list(CAMVID_GROUNDED_SAM_TARGET)
    assert default_target(names) == CAMVID_GROUNDED_SAM_TARGET
    with pytest.raises(DataError, match=r"--noise-target FILE\.json"):
        default_target(["a", "b"])
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"Road": 90, "Car": 80.5}))
    assert load_target(good, names) == {"Road": 90.0, "Car": 80.5}
    vector = target_vector(load_target(good, names), names)
    assert vector[names.index("Road")] == pytest.approx(0.9)
    assert np.isnan(vector[names.index("Sky")])
    cases = {
        "{not json": "not a readable JSON file",
        "[1, 2]": "must be a JSON object",
        '{"Rooad": 90}': "unknown class 'Rooad'; valid names: Sky, Building",
        '{"Road": 190}': "'Road': target IoU must be a number in 0..100",
        '{"Road": "high"}': "'Road': target IoU must be a number",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(DataError, match=message) as info:
            load_target(bad, names)
        assert str(bad) in str(info.value)
    with pytest.raises(DataError, match="no such file"):
        load_target(tmp_path / "missing.json", names)


def lookalike_pool(
    num_segments: int = 3000, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A pool whose segments each resemble one other class by a random amount."""
    histograms, majority = pool(num_segments, seed=seed)
    rng = np.random.default_rng(seed + 100)
    lookalike = rng.dirichlet(np.ones(NUM_CLASSES) * 0.3, size=num_segments)
    return histograms, majority, lookalike


def test_correlated_flips_look_alikes_first_and_to_what_they_look_like() -> None:
    histograms, majority, lookalike = lookalike_pool()
    sizes = histograms.sum(axis=1)
    rates = np.array([0.3, 0.2, 0.1, 0.5, 0.4])

    def draw(seed: int) -> np.ndarray:
        return draw_correlated_labels(
            majority, rates, lookalike, sizes=sizes, rng=np.random.default_rng(seed)
        )

    a, b, c = draw(3), draw(3), draw(4)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    other = lookalike_classes(majority, lookalike)
    assert (other != majority).all()
    flipped = a != majority
    # Every flipped segment takes the class it looks most like (the same error for look-alikes).
    np.testing.assert_array_equal(a[flipped], other[flipped])
    best = lookalike[np.arange(majority.size), other]
    largest = sizes.max()
    for k in range(NUM_CLASSES):
        members = majority == k
        # Mass flipped as solved, up to half a segment, as in the detector-like draw.
        assert abs(sizes[members & flipped].sum() - rates[k] * sizes[members].sum()) <= largest / 2
        # Flipped segments look more like another class than the ones kept.
        assert best[members & flipped].mean() > best[members & ~flipped].mean() + 0.1
    np.testing.assert_allclose(
        flipped_share(majority, a, sizes, num_classes=NUM_CLASSES), rates, atol=0.01
    )


def test_correlated_rates_reach_the_target_with_lookalike_rows() -> None:
    histograms, majority, lookalike = lookalike_pool(1500, seed=2)
    sizes = histograms.sum(axis=1)
    rows = lookalike_rows(majority, lookalike, sizes=sizes, num_classes=NUM_CLASSES)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.diag(rows), 0.0)
    target = np.array([0.6, 0.55, 0.5, 0.4, 0.35])
    solved = solve_flip_rates(histograms, majority, rows, target)
    labels = draw_correlated_labels(
        majority, solved.rates, lookalike, sizes=sizes, rng=np.random.default_rng(0)
    )
    realised = iou_per_class(realised_confusion(histograms, labels))
    reachable = [c for c in range(NUM_CLASSES) if c not in solved.unreachable]
    assert reachable
    assert np.abs(realised[reachable] - target[reachable]).max() < 0.05
