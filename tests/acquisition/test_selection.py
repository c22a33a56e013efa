from __future__ import annotations

import numpy as np
import pytest

from a2lc.acquisition import rank_segments, select_top


def test_top_b_skips_ineligible_and_keeps_order() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.9, np.nan, 0.7])
    eligible = np.array([True, False, True, True, True, True])
    assert select_top(scores, budget=3, eligible=eligible).tolist() == [3, 5, 2]
    assert rank_segments(scores).tolist() == [1, 3, 5, 2, 0, 4]  # ties in pool order, NaN last


def test_budget_larger_than_eligible_is_an_error() -> None:
    with pytest.raises(ValueError, match="budget 3 is larger than the 2 segments"):
        select_top(np.ones(3), budget=3, eligible=np.array([True, False, True]))
