from __future__ import annotations

import numpy as np

from a2lc.data.segments import segment_sizes
from a2lc.pseudo_labels.segments import (
    GtProxyConfig,
    gt_proxy_segments,
    label_segments_by_prediction,
    superpixel_segments,
)


def scene() -> np.ndarray:
    gt = np.zeros((120, 160), dtype=np.uint8)
    gt[60:] = 1
    gt[20:40, 30:60] = 2  # an object
    gt[100:103, 10:12] = 3  # a tiny object (6 px)
    gt[:5, :] = 255
    return gt


def test_gt_proxy_is_deterministic_and_object_aligned() -> None:
    gt = scene()
    config = GtProxyConfig(min_area=20, max_side=80, jitter=0.0)
    a = gt_proxy_segments(gt, rng=np.random.default_rng(1), config=config)
    b = gt_proxy_segments(gt, rng=np.random.default_rng(1), config=config)
    np.testing.assert_array_equal(a, b)
    ids, _ = segment_sizes(a)
    for i in ids:  # without jitter every segment holds one class
        assert len(np.unique(gt[a == i])) == 1
    assert (a[100:103, 10:12] == 0).all()  # tiny component dropped
    assert (a[:5] == 0).all()  # void is never covered
    # The large class-1 region (60×160) is cut on an 80 px grid into several pieces.
    assert len(np.unique(a[gt == 1])) >= 2


def test_gt_proxy_jitter_moves_boundaries_a_few_pixels() -> None:
    gt = scene()
    plain = gt_proxy_segments(
        gt, rng=np.random.default_rng(0), config=GtProxyConfig(jitter=0.0, min_area=1)
    )
    jittered = gt_proxy_segments(
        gt, rng=np.random.default_rng(0), config=GtProxyConfig(jitter=3.0, min_area=1)
    )
    assert (plain != jittered).any()
    assert ((plain > 0) != (jittered > 0)).mean() < 0.1


def test_superpixels_cover_the_image() -> None:
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 255, (4, 6, 3)).repeat(10, axis=0).repeat(10, axis=1)
    image = np.clip(blocks + rng.normal(0, 5, blocks.shape), 0, 255).astype(np.uint8)
    segments = superpixel_segments(image, num_segments=20)
    np.testing.assert_array_equal(segments, superpixel_segments(image, num_segments=20))
    assert segments.min() == 1
    assert 5 <= segments.max() <= 60


def test_labelling_by_prediction_drops_unsure_segments() -> None:
    segments = np.array([[1, 1, 2, 2]])
    probs = np.array([[[0.9, 0.8, 0.4, 0.5]], [[0.1, 0.2, 0.6, 0.5]]], dtype=np.float32)
    kept, labels = label_segments_by_prediction(probs, segments, min_confidence=0.7)
    assert kept.tolist() == [[1, 1, 0, 0]]
    assert labels.tolist() == [[0, 0, 255, 255]]
