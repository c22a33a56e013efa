"""ABC's adaptive class weight: class rarity raised to the cube of dataset imbalance.

``n_c`` counts the pixels currently labelled ``c`` inside segments that were not
corrected manually in an earlier round; pixels of no segment (id 0) and pixels
labelled 255 are not counted. With present classes ``n_c > 0``:

* class rarity ``CR_c = min_c' n_c' / n_c``
* dataset imbalance ``DI = KL(p || uniform over present classes)``, ``p_c = n_c / Σ n``
* weight ``w_c = CR_c ** (DI ** 3)``; absent classes get 0.
"""

from __future__ import annotations

import numpy as np

from a2lc.data.sample import IGNORE_INDEX


def segment_mask(segments: np.ndarray, *, exclude: np.ndarray | None = None) -> np.ndarray:
    """``H×W`` bool: pixels covered by a segment (id > 0) whose id is not in ``exclude``."""
    if exclude is None or len(exclude) == 0:
        return np.asarray(segments > 0)
    top = max(int(segments.max(initial=0)), int(np.max(exclude)))
    keep = np.ones(top + 1, dtype=bool)
    keep[0] = False
    keep[np.asarray(exclude, dtype=np.int64)] = False
    return np.asarray(keep[segments])


def class_pixel_counts(
    labels: np.ndarray,
    segments: np.ndarray,
    *,
    num_classes: int,
    exclude: np.ndarray | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Pixels per class of one image, ``(C,)`` int64.

    Args:
        labels: ``H×W`` uint8 current labels (255 = ignore, not counted).
        segments: ``H×W`` int segment map (0 = no segment, not counted).
        exclude: segment ids not to count (those corrected manually in earlier rounds).
    """
    if labels.shape != segments.shape:
        raise ValueError(f"labels {labels.shape} and segments {segments.shape} differ in shape")
    values = labels[segment_mask(segments, exclude=exclude)]
    counts = np.bincount(values.ravel(), minlength=max(num_classes, ignore_index + 1))
    return counts[:num_classes].astype(np.int64)


def class_rarity(counts: np.ndarray) -> np.ndarray:
    """``CR_c = min n / n_c`` over present classes, 0 for absent ones. ``(C,)`` float64."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    rarity = np.zeros_like(counts)
    if present.any():
        rarity[present] = counts[present].min() / counts[present]
    return rarity


def dataset_imbalance(counts: np.ndarray) -> float:
    """KL divergence (nats) of the class distribution to uniform over present classes."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts[counts > 0]
    if present.size == 0:
        return 0.0
    p = present / present.sum()
    return float(np.sum(p * np.log(p * present.size)))


def adaptive_class_weight(counts: np.ndarray) -> np.ndarray:
    """ABC class weight ``w_c = CR_c ** (DI ** 3)`` from per-class pixel counts ``(C,)``.

    Returns ``(C,)`` float64 in [0, 1]; 0 for classes with no pixels. With a
    balanced pool (DI = 0) every present class weighs 1.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1:
        raise ValueError(f"counts must be a (C,) vector, got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    rarity = class_rarity(counts)
    exponent = dataset_imbalance(counts) ** 3
    weight = np.zeros(counts.shape, dtype=np.float64)
    present = counts > 0
    weight[present] = rarity[present] ** exponent
    return weight
