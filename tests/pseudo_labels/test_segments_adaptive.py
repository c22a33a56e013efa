"""Adaptive superpixels: cut where the seed model's class changes."""

from __future__ import annotations

import numpy as np
import pytest

from a2lc.pseudo_labels.segments import split_by_prediction


def test_a_segment_is_cut_where_the_prediction_changes_and_small_parts_stay() -> None:
    segments = np.ones((10, 10), np.int64)
    segments[:, 5:] = 2
    segments[0, 0] = 0
    prediction = np.zeros((10, 10), np.int64)
    prediction[5:, :] = 1
    prediction[9, 9] = 2  # one pixel: too small to trust, stays with its segment
    out = split_by_prediction(segments, prediction, min_area=3)
    assert out[0, 0] == 0  # no segment stays no segment
    assert np.unique(out[out > 0]).size == 4  # each segment in two halves
    for s in np.unique(out[out > 0]):
        inside = out == s
        assert np.unique(segments[inside]).size == 1  # parts never cross segments
    # (9, 9) joins the largest part of segment 2: its top half (25 pixels against 24).
    assert out[9, 9] == out[0, 9]
    with pytest.raises(ValueError, match="same H×W"):
        split_by_prediction(segments, prediction[:-1])


def test_unsure_segments_are_cut_finer_and_sure_ones_stay() -> None:
    from a2lc.pseudo_labels.segments import refine_uncertain

    yy, xx = np.mgrid[:40, :40]
    image = np.dstack([xx * 4, yy * 4, np.full((40, 40), 128)]).astype(np.uint8)
    image[:, 20:] //= 4  # a colour edge inside segment 1 the model did not see
    segments = np.ones((40, 40), np.int64)
    segments[30:, :] = 2
    segments[0, 0] = 0
    confidence = np.full((40, 40), 0.95)
    confidence[segments == 1] = 0.6  # unsure
    out = refine_uncertain(segments, image, confidence, below=0.8, pixels_per_part=100)
    assert out[0, 0] == 0
    assert np.unique(out[segments == 2]).size == 1  # a sure segment stays whole
    assert np.unique(out[segments == 1]).size > 2  # an unsure one is cut into parts
    for s in np.unique(out[out > 0]):
        assert np.unique(segments[out == s]).size == 1  # parts never cross segments
    assert set(np.unique(out[out > 0]).tolist()) == set(range(1, out.max() + 1))
    with pytest.raises(ValueError, match="same H×W"):
        refine_uncertain(segments, image, confidence[:-1], below=0.8, pixels_per_part=100)
