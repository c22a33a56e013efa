from __future__ import annotations

import numpy as np
import pytest

from a2lc.correction import count_transitions, merge_transitions, simulate_annotator


def test_fifty_percent_rule() -> None:
    segments = np.array([[1, 1, 2, 2], [3, 3, 3, 3]])
    labels = np.array([[0, 0, 1, 1], [2, 2, 2, 2]], dtype=np.uint8)
    gt = np.array([[0, 4, 1, 1], [2, 255, 255, 255]], dtype=np.uint8)
    answer = simulate_annotator(labels, segments, gt, [1, 2, 3])
    # seg 1: acc 0.5 → relabel to majority GT (tie 0/4 → 0); seg 2: acc 1 → keep;
    # seg 3: acc 0.25 → mostly void → 255.
    np.testing.assert_allclose(answer.accuracy, [0.5, 1.0, 0.25])
    assert answer.relabel.tolist() == [True, False, True]
    assert answer.changed.tolist() == [False, False, True]
    assert answer.before.tolist() == [0, 1, 2]
    assert answer.after.tolist() == [0, 1, 255]
    assert answer.labels.tolist() == [[0, 0, 1, 1], [255, 255, 255, 255]]
    assert labels[1, 0] == 2  # input untouched


def test_unqueried_segments_never_change() -> None:
    rng = np.random.default_rng(0)
    segments = rng.integers(1, 6, (10, 10))
    labels = rng.integers(0, 3, (10, 10)).astype(np.uint8)
    gt = rng.integers(0, 3, (10, 10)).astype(np.uint8)
    answer = simulate_annotator(labels, segments, gt, [2])
    np.testing.assert_array_equal(answer.labels[segments != 2], labels[segments != 2])


def test_bad_queries() -> None:
    segments = np.ones((2, 2), dtype=int)
    labels = np.zeros((2, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="do not occur"):
        simulate_annotator(labels, segments, labels, [7])
    with pytest.raises(ValueError, match="same shape"):
        simulate_annotator(labels, segments, labels[:1], [1])


def test_transition_tables() -> None:
    table = count_transitions([1, 1, 2], [0, 1, 0])
    assert table == {1: {0: 1, 1: 1}, 2: {0: 1}}
    assert merge_transitions([table, {1: {0: 2}}]) == {1: {0: 3, 1: 1}, 2: {0: 1}}
