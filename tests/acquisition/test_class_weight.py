from __future__ import annotations

import numpy as np
import pytest

from a2lc.acquisition import (
    adaptive_class_weight,
    class_pixel_counts,
    class_rarity,
    dataset_imbalance,
)


def test_weights_by_hand() -> None:
    counts = np.array([100, 10, 0, 50])
    p = np.array([100, 10, 50]) / 160
    di = float(np.sum(p * np.log(p * 3)))
    assert dataset_imbalance(counts) == pytest.approx(di)
    np.testing.assert_allclose(class_rarity(counts), [0.1, 1.0, 0.0, 0.2])
    expected = np.array([0.1**di**3, 1.0, 0.0, 0.2**di**3])
    np.testing.assert_allclose(adaptive_class_weight(counts), expected)


def test_balanced_pool_weighs_every_present_class_one() -> None:
    np.testing.assert_allclose(adaptive_class_weight(np.array([7, 7, 0, 7])), [1, 1, 0, 1])


def test_more_imbalance_means_smaller_tail_weight_for_head_classes() -> None:
    mild = adaptive_class_weight(np.array([200, 100]))
    strong = adaptive_class_weight(np.array([2000, 100]))
    assert mild[1] == strong[1] == 1.0
    assert strong[0] < mild[0] < 1.0


def test_pixel_counts_skip_ignore_uncovered_and_excluded_segments() -> None:
    segments = np.array([[0, 1, 1], [2, 2, 3]])
    labels = np.array([[1, 0, 255], [1, 1, 2]], dtype=np.uint8)
    np.testing.assert_array_equal(class_pixel_counts(labels, segments, num_classes=3), [1, 2, 1])
    np.testing.assert_array_equal(
        class_pixel_counts(labels, segments, num_classes=3, exclude=np.array([2])), [1, 0, 1]
    )


def test_empty_pool_gives_zero_weights() -> None:
    np.testing.assert_array_equal(adaptive_class_weight(np.zeros(3, dtype=int)), [0, 0, 0])
