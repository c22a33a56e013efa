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


def reference_expected_gain(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray, sizes: np.ndarray
) -> dict[int, float]:
    """Σ_x cos_x · Σ_{t≠y_x} P[t,x] / U_t, segment by segment (slow, obviously right)."""
    out = {}
    for m in np.unique(segments[segments > 0]):
        p = probs[:, segments == m].astype(np.float64)
        pred = p.argmax(axis=0)
        dominant = np.bincount(pred, minlength=p.shape[0]).argmax()
        rep = p[:, pred == dominant].mean(axis=1)
        y = labels[segments == m].astype(int)
        y = np.where(y == 255, pred, y)
        cos = (p * rep[:, None]).sum(0) / (np.linalg.norm(p, axis=0) * np.linalg.norm(rep))
        other = (p / sizes[:, None]).sum(0) - p[y, np.arange(p.shape[1])] / sizes[y]
        out[int(m)] = float(np.sum(cos * other))
    return out


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("seed", [0, 3])
def test_other_class_mass_gives_the_expected_gain_formula(backend: str, seed: int) -> None:
    from a2lc.acquisition.functions import expected_gain
    from a2lc.acquisition.statistics import other_class_mass

    probs, labels, segments = make_inputs(seed, num_classes=6, height=3 * TILE // 64 + 1, width=64)
    sizes = np.random.default_rng(seed).uniform(100, 5000, 6)
    stats = segment_statistics(probs, labels, segments, backend=backend)  # type: ignore[arg-type]
    mass = other_class_mass(probs, labels, segments, stats, backend=backend)  # type: ignore[arg-type]
    expected = reference_expected_gain(probs, labels, segments, sizes)
    np.testing.assert_allclose(mass @ (1 / sizes), [expected[i] for i in stats.ids], rtol=1e-6)
    direct = expected_gain(probs, labels, segments, class_sizes=sizes)
    np.testing.assert_allclose(direct.scores, [expected[i] for i in direct.ids], rtol=1e-6)


def test_class_sizes_take_the_larger_of_labels_and_predictions_and_are_clipped() -> None:
    from a2lc.acquisition.functions import MIN_CLASS_SIZE_FRACTION, PoolTotals, class_sizes

    totals = PoolTotals(
        eligible_label_pixels=np.array([10, 0, 0]),
        label_pixels=np.array([100_000, 0, 5_000]),
        probability_mass=np.array([90_000.0, 0.0, 7_500.0]),
    )
    sizes = class_sizes(totals)
    floor = MIN_CLASS_SIZE_FRACTION * (100_000 + 7_500) / 3
    np.testing.assert_allclose(sizes, [100_000, floor, 7_500])


def test_eg_puts_a_rare_truth_hidden_under_a_head_label_first() -> None:
    # Two segments with the same disagreement: one's other class is rare in the pool.
    from a2lc.acquisition.functions import expected_gain

    probs = np.zeros((3, 1, 8), dtype=np.float32)
    probs[:, 0, :4] = np.array([0.3, 0.7, 0.0])[:, None]  # segment 1: looks like class 1 (rare)
    probs[:, 0, 4:] = np.array([0.3, 0.0, 0.7])[:, None]  # segment 2: looks like class 2 (head)
    labels = np.zeros((1, 8), dtype=np.uint8)
    segments = np.array([[1, 1, 1, 1, 2, 2, 2, 2]], dtype=np.int32)
    scores = expected_gain(probs, labels, segments, class_sizes=np.array([1e5, 1e3, 1e5]))
    assert scores.scores[0] > 10 * scores.scores[1]
