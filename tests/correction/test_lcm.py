from __future__ import annotations

import numpy as np
import pytest

from a2lc.correction.lcm import (
    CITYSCAPES_THRESHOLDS,
    LCMConfig,
    class_balanced_weights,
    fit_and_predict,
    segment_features,
    select_relabels,
    tail_classes,
)


def test_segment_features_are_mean_probabilities() -> None:
    probs = np.zeros((2, 2, 3), dtype=np.float32)
    probs[0] = [[1.0, 0.5, 0.0], [0.2, 0.2, 0.2]]
    probs[1] = 1 - probs[0]
    segments = np.array([[1, 1, 0], [4, 4, 4]])
    ids, features = segment_features(probs, segments)
    assert ids.tolist() == [1, 4]
    np.testing.assert_allclose(features, [[0.75, 0.25], [0.2, 0.8]], rtol=1e-6)


def test_class_balanced_weights() -> None:
    weights = class_balanced_weights(np.array([0, 0, 0, 2]), 4)
    # N/n: class 0 → 4/3, class 2 → 4; normalised to sum 1; unseen classes 0.
    np.testing.assert_allclose(weights, [0.25, 0, 0.75, 0], rtol=1e-6)


def test_tail_classes_count_after_labels_and_break_ties_by_id() -> None:
    after = np.array([0, 0, 0, 1, 1, 3, 255, 255, 255, 255])
    tail = tail_classes(after, 5)
    # counts: 0→3, 1→2, 2→0, 3→1, 4→0; fewest first, ties by id: 2, 4, 3, 1, 0
    assert tail.tolist() == [2, 4]
    assert tail_classes(after, 7).tolist() == [2, 4, 5]


def test_select_relabels_applies_every_guard() -> None:
    tail = np.array([3, 4])  # c* = 3
    current = np.array([0, 0, 0, 0, 3, 1, 0])
    predicted = np.array([1, 1, 0, 4, 1, 2, 1])
    confidence = np.array([0.999, 0.98, 1.0, 1.0, 1.0, 1.0, 1.0])
    eligible = np.array([True, True, True, True, True, True, False])
    chosen = select_relabels(
        current, predicted, confidence, eligible=eligible, tail=tail, threshold=0.99
    )
    # 0: ok; 1: below τ; 2: same class; 3: ŷ in tail; 4: y = c*; 5: ok; 6: queried before
    assert chosen.tolist() == [True, False, False, False, False, True, False]


def test_thresholds_per_round() -> None:
    config = LCMConfig()
    assert [config.threshold(r) for r in range(1, 7)] == [
        *CITYSCAPES_THRESHOLDS,
        CITYSCAPES_THRESHOLDS[-1],
    ]


def test_mlp_learns_a_separable_mapping_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    num_classes = 4
    targets = rng.integers(0, num_classes, 64)
    features = np.full((64, num_classes), 0.1, dtype=np.float32)
    features[np.arange(64), targets] = 0.7
    features += rng.normal(0, 0.02, features.shape).astype(np.float32)
    config = LCMConfig(epochs=30, lr=1e-2)
    a = fit_and_predict(features, targets, features, num_classes=num_classes, config=config)
    b = fit_and_predict(features, targets, features, num_classes=num_classes, config=config)
    assert (a.predicted == targets).mean() > 0.95
    np.testing.assert_array_equal(a.predicted, b.predicted)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    # The double softmax saturates: confidences approach 1 on well-separated data.
    assert np.median(a.confidence) > 0.9


@pytest.mark.parametrize("num_classes", [2, 11])
def test_tail_is_half_the_classes(num_classes: int) -> None:
    assert len(tail_classes(np.zeros(0, dtype=int), num_classes)) == num_classes // 2
