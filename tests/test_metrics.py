from __future__ import annotations

import numpy as np
import pytest

from a2lc.metrics import (
    ConfusionAccumulator,
    confusion_matrix,
    data_confusion,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
)


def test_iou_by_hand() -> None:
    target = np.array([0, 0, 1, 1, 2, 255])
    pred = np.array([0, 1, 1, 1, 255, 0])
    cm = confusion_matrix(target, pred, num_classes=4)
    assert cm.sum() == 4  # pixels with 255 on either side are skipped
    iou = iou_per_class(cm)
    np.testing.assert_allclose(iou[:2], [1 / 2, 2 / 3])
    assert np.isnan(iou[2])
    assert np.isnan(iou[3])
    assert mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert pixel_accuracy(cm) == pytest.approx(3 / 4)


def test_accumulator_equals_one_big_matrix() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, (2, 5, 6)), rng.integers(0, 4, (2, 5, 6))
    acc = ConfusionAccumulator(4)
    for i in range(2):
        acc.update(a[i], b[i])
    np.testing.assert_array_equal(acc.matrix, confusion_matrix(a, b, num_classes=4))
    assert acc.miou == mean_iou(acc.matrix)


def test_data_confusion_skips_unlabelled_pixels() -> None:
    labels = np.array([[255, 1]], dtype=np.uint8)
    gt = np.array([[0, 1]], dtype=np.uint8)
    assert data_confusion(labels, gt, num_classes=2).tolist() == [[0, 0], [0, 1]]


def test_out_of_range_ids_are_errors() -> None:
    with pytest.raises(ValueError, match=r"class ids must be 0\.\.1"):
        confusion_matrix(np.array([0, 2]), np.array([0, 0]), num_classes=2)
