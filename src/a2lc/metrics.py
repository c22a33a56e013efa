"""Confusion-matrix metrics: per-class IoU, mIoU, pixel accuracy, data and model mIoU.

Confusion matrices are ``C×C`` int64 with rows = ground truth, columns =
prediction (or current label). Pixels where either side is 255 are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from a2lc.data.sample import IGNORE_INDEX


def confusion_matrix(
    target: np.ndarray,
    prediction: np.ndarray,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """``C×C`` counts of (target, prediction) pairs, skipping pixels where either is ``ignore_index``.

    Values ≥ C other than ``ignore_index`` raise ``ValueError``.
    """
    if target.shape != prediction.shape:
        raise ValueError(f"target {target.shape} and prediction {prediction.shape} differ in shape")
    t = target.ravel().astype(np.int64)
    p = prediction.ravel().astype(np.int64)
    keep = (t != ignore_index) & (p != ignore_index)
    t, p = t[keep], p[keep]
    if t.size and (t.max() >= num_classes or p.max() >= num_classes or min(t.min(), p.min()) < 0):
        raise ValueError(f"class ids must be 0..{num_classes - 1} or {ignore_index}")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """``(C,)`` IoU per class; NaN for classes absent from both target and prediction."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    return np.asarray(np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0))


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over classes that occur in target or prediction (NaN if none)."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Fraction of counted pixels whose prediction equals the target."""
    total = float(np.sum(confusion))
    return float(np.trace(confusion)) / total if total else float("nan")


@dataclass
class ConfusionAccumulator:
    """Streams images into one confusion matrix (memory independent of the pool size)."""

    num_classes: int
    ignore_index: int = IGNORE_INDEX
    matrix: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, target: np.ndarray, prediction: np.ndarray) -> None:
        self.matrix += confusion_matrix(
            target, prediction, num_classes=self.num_classes, ignore_index=self.ignore_index
        )

    @property
    def iou(self) -> np.ndarray:
        return iou_per_class(self.matrix)

    @property
    def miou(self) -> float:
        return mean_iou(self.matrix)

    @property
    def accuracy(self) -> float:
        return pixel_accuracy(self.matrix)


def data_confusion(labels: np.ndarray, ground_truth: np.ndarray, *, num_classes: int) -> np.ndarray:
    """Label quality of one image: confusion of current labels vs ground truth.

    Pixels whose current label is 255 (uncovered or void) or whose ground truth
    is void are skipped, as in the paper's data mIoU.
    """
    return confusion_matrix(ground_truth, labels, num_classes=num_classes)


def model_confusion(
    prediction: np.ndarray, ground_truth: np.ndarray, *, num_classes: int
) -> np.ndarray:
    """Model quality of one image: confusion of predictions vs ground truth (void skipped)."""
    return confusion_matrix(ground_truth, prediction, num_classes=num_classes)
