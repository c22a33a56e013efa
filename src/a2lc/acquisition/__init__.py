"""Acquisition: score segments (pure functions on arrays) and select the top-B."""

from a2lc.acquisition.class_weight import (
    adaptive_class_weight,
    class_pixel_counts,
    class_rarity,
    dataset_imbalance,
)
from a2lc.acquisition.functions import (
    ACQUISITIONS,
    AcquisitionFunction,
    SegmentScores,
    abc,
    alc,
    cil_mean,
    entropy,
    random,
    score_segments,
    weighted_confidence_sum,
)
from a2lc.acquisition.selection import rank_segments, select_top

__all__ = [
    "ACQUISITIONS",
    "AcquisitionFunction",
    "SegmentScores",
    "abc",
    "adaptive_class_weight",
    "alc",
    "cil_mean",
    "class_pixel_counts",
    "class_rarity",
    "dataset_imbalance",
    "entropy",
    "random",
    "rank_segments",
    "score_segments",
    "select_top",
    "weighted_confidence_sum",
]
