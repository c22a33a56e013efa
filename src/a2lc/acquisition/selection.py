"""Ranking: pick the top-B segments of the pool from their scores."""

from __future__ import annotations

import numpy as np


def rank_segments(scores: np.ndarray) -> np.ndarray:
    """Indices of ``scores`` ``(N,)`` from highest to lowest; ties keep pool order.

    NaN scores rank last.
    """
    scores = np.asarray(scores, dtype=np.float64)
    key = np.where(np.isnan(scores), -np.inf, scores)
    return np.argsort(-key, kind="stable")


def select_top(
    scores: np.ndarray, *, budget: int, eligible: np.ndarray | None = None
) -> np.ndarray:
    """The ``budget`` highest-scoring eligible entries, as indices into ``scores``, best first.

    Args:
        scores: ``(N,)`` one score per segment of the pool (in pool order).
        budget: number of segments to query, B ≥ 0.
        eligible: ``(N,)`` bool, False for segments that may not be queried
            (corrected manually in an earlier round). All eligible if None.

    Raises ``ValueError`` if fewer than ``budget`` segments are eligible.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be (N,), got shape {scores.shape}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    order = rank_segments(scores)
    if eligible is not None:
        eligible = np.asarray(eligible, dtype=bool)
        if eligible.shape != scores.shape:
            raise ValueError(f"eligible {eligible.shape} and scores {scores.shape} differ in shape")
        order = order[eligible[order]]
    if budget > order.size:
        raise ValueError(
            f"budget {budget} is larger than the {order.size} segments that can still be queried"
        )
    return order[:budget]
