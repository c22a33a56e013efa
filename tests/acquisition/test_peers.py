"""The cleanlab peer baseline: cleanlab's own scores, aggregated per segment."""

from __future__ import annotations

import numpy as np
import pytest

from a2lc.acquisition import ACQUISITIONS
from tests.acquisition.test_functions import make_inputs


def test_cleanlab_scores_are_one_minus_its_softmin_quality_per_segment() -> None:
    from cleanlab.internal.multilabel_scorer import softmin

    from a2lc.acquisition.peers import cleanlab_quality

    probs, labels, segments = make_inputs(4, num_classes=4)
    ids, quality = cleanlab_quality(probs, labels, segments)
    given = np.where(labels == 255, probs.argmax(axis=0), labels)
    for segment_id, q in zip(ids, quality, strict=True):
        mask = segments == segment_id
        pixel = np.take_along_axis(probs, given[None], axis=0)[0][mask].astype(np.float64)
        assert q == pytest.approx(float(softmin(pixel[None], temperature=0.1, axis=1)[0]))
    scores = ACQUISITIONS.get("cleanlab").score(probs, labels, segments)
    np.testing.assert_array_equal(scores.ids, ids)
    np.testing.assert_allclose(scores.scores, 1 - quality)


def test_cleanlab_finds_a_planted_error() -> None:
    probs = np.full((3, 4, 8), 0.05, dtype=np.float32)
    probs[0] = 0.9
    labels = np.zeros((4, 8), dtype=np.uint8)
    segments = np.ones((4, 8), dtype=np.int32)
    segments[:, 4:] = 2
    labels[:, 4:] = 2  # segment 2 is labelled 2, the model says 0
    scores = ACQUISITIONS.get("cleanlab").score(probs, labels, segments)
    assert scores.scores[1] > scores.scores[0]
