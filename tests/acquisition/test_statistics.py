"""One sweep: score parts by label class and LCM features, numba against the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from a2lc.acquisition import abc
from a2lc.acquisition import statistics as stats_module
from a2lc.acquisition._kernels import TILE
from a2lc.acquisition.statistics import segment_statistics
from a2lc.correction.lcm import segment_features
from tests.acquisition.test_functions import make_inputs, reference_abc


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("seed", [0, 1, 4])
def test_label_scores_with_any_weight_give_the_formula(backend: str, seed: int) -> None:
    probs, labels, segments = make_inputs(seed, num_classes=6)
    stats = segment_statistics(probs, labels, segments, backend=backend)  # type: ignore[arg-type]
    for weight in (np.ones(6), np.random.default_rng(seed).random(6)):
        expected = reference_abc(probs, labels, segments, weight)
        assert stats.ids.tolist() == sorted(expected)
        np.testing.assert_allclose(
            stats.scores(weight), [expected[i] for i in stats.ids], rtol=1e-6
        )
    np.testing.assert_allclose(stats.scores(None), stats.scores(np.ones(6)), rtol=1e-12)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_features_are_segment_means_and_sizes_pixel_counts(backend: str) -> None:
    probs, labels, segments = make_inputs(2, num_classes=5, height=3 * TILE // 64 + 5, width=64)
    segments = np.where(segments > 0, segments * 977, 0).astype(np.int32)  # ids with gaps
    stats = segment_statistics(probs, labels, segments, backend=backend)  # type: ignore[arg-type]
    ids, features = segment_features(probs, segments)
    np.testing.assert_array_equal(stats.ids, ids)
    np.testing.assert_allclose(stats.features, features, rtol=1e-6)
    assert stats.features.dtype == np.float32
    np.testing.assert_array_equal(stats.sizes, [np.sum(segments == i) for i in ids])


def test_label_scores_split_by_the_label_used() -> None:
    # One segment, labels 0 and 255 (255 uses the prediction, class 1 here).
    probs = np.zeros((3, 1, 4), dtype=np.float32)
    probs[:, 0, :] = np.array([[0.2, 0.2, 0.2, 0.2], [0.7, 0.7, 0.7, 0.7], [0.1, 0.1, 0.1, 0.1]])
    labels = np.array([[0, 0, 255, 2]], dtype=np.uint8)
    segments = np.ones((1, 4), dtype=np.int32)
    for backend in ("numba", "numpy"):
        stats = segment_statistics(probs, labels, segments, backend=backend)  # type: ignore[arg-type]
        # cos = 1 everywhere (identical vectors): CIL per pixel 0.8, 0.8, 0.3, 0.9.
        np.testing.assert_allclose(stats.label_scores, [[1.6, 0.3, 0.9]], rtol=1e-6)


def test_many_segments_fall_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    probs, labels, segments = make_inputs(3, num_classes=4)
    monkeypatch.setattr(stats_module, "MAX_FUSED_ELEMENTS", 4 * 4 * 3)  # 3 segments
    called: list[str] = []
    original = stats_module._statistics_numpy

    def spy(*args: np.ndarray) -> stats_module.SegmentStatistics:
        called.append("numpy")
        return original(*args)

    monkeypatch.setattr(stats_module, "_statistics_numpy", spy)
    auto = segment_statistics(probs, labels, segments)
    assert called == ["numpy"]
    fast = segment_statistics(probs, labels, segments, backend="numba")
    np.testing.assert_allclose(auto.label_scores, fast.label_scores, rtol=1e-6, atol=1e-12)


def test_abc_and_statistics_agree() -> None:
    probs, labels, segments = make_inputs(7, num_classes=5)
    weight = np.linspace(0.2, 1.0, 5)
    direct = abc(probs, labels, segments, class_weight=weight)
    stats = segment_statistics(probs, labels, segments)
    np.testing.assert_array_equal(direct.ids, stats.ids)
    np.testing.assert_allclose(direct.scores, stats.scores(weight), rtol=1e-12)
