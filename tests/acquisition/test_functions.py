from __future__ import annotations

import numpy as np
import pytest

from a2lc.acquisition import (
    ACQUISITIONS,
    abc,
    alc,
    cil_mean,
    entropy,
    random,
    score_segments,
    weighted_confidence_sum,
)
from a2lc.acquisition._kernels import TILE
from a2lc.errors import UnknownNameError


def make_inputs(
    seed: int, *, num_classes: int = 5, height: int = 20, width: int = 30, num_segments: int = 12
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (num_classes, height, width))
    probs = np.exp(logits) / np.exp(logits).sum(axis=0)
    segments = rng.integers(0, num_segments + 1, (height, width)).astype(np.int32)
    labels = rng.integers(0, num_classes, (height, width)).astype(np.uint8)
    labels[rng.random((height, width)) < 0.1] = 255
    return probs.astype(np.float32), labels, segments


def reference_abc(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray, weight: np.ndarray
) -> dict[int, float]:
    """The spec's formula, segment by segment (slow, obviously right)."""
    out = {}
    for m in np.unique(segments[segments > 0]):
        p = probs[:, segments == m].astype(np.float64)  # C × n
        pred = p.argmax(axis=0)
        dominant = np.bincount(pred, minlength=p.shape[0]).argmax()
        rep = p[:, pred == dominant].mean(axis=1)
        y = labels[segments == m].astype(int)
        y = np.where(y == 255, pred, y)
        cil = 1 - p[y, np.arange(p.shape[1])]
        cos = (p * rep[:, None]).sum(0) / (np.linalg.norm(p, axis=0) * np.linalg.norm(rep))
        out[int(m)] = float(np.sum(cos * weight[y] * cil))
    return out


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_abc_matches_the_formula(backend: str, seed: int) -> None:
    probs, labels, segments = make_inputs(seed)
    weight = np.random.default_rng(seed).random(probs.shape[0])
    result = weighted_confidence_sum(probs, labels, segments, class_weight=weight, backend=backend)  # type: ignore[arg-type]
    expected = reference_abc(probs, labels, segments, weight)
    assert result.ids.tolist() == sorted(expected)
    np.testing.assert_allclose(result.scores, [expected[i] for i in result.ids], rtol=1e-6)


def test_backends_agree_across_tiles_and_sparse_ids() -> None:
    # More pixels than one tile, segments crossing tile edges, ids with gaps.
    probs, labels, segments = make_inputs(
        5, num_classes=7, height=3 * TILE // 64 + 3, width=64, num_segments=40
    )
    segments = np.where(segments > 0, segments * 1000, 0).astype(np.int32)
    weight = np.linspace(0.1, 1, 7)
    fast = abc(probs, labels, segments, class_weight=weight, backend="numba")
    slow = abc(probs, labels, segments, class_weight=weight, backend="numpy")
    np.testing.assert_array_equal(fast.ids, slow.ids)
    np.testing.assert_allclose(fast.scores, slow.scores, rtol=1e-6)


def test_score_of_a_segment_does_not_depend_on_the_rest_of_the_image() -> None:
    probs, labels, segments = make_inputs(3)
    weight = np.ones(probs.shape[0])
    whole = dict(zip(*abc(probs, labels, segments, class_weight=weight), strict=True))
    only = np.where(segments == 4, 4, 0).astype(np.int32)
    alone = dict(zip(*abc(probs, labels, only, class_weight=weight), strict=True))
    assert alone[4] == pytest.approx(whole[4], rel=1e-9)


def test_planted_label_error_scores_highest() -> None:
    num_classes, height, width = 3, 8, 12
    probs = np.full((num_classes, height, width), 0.05, dtype=np.float32)
    probs[0] = 0.9  # the model is confident everything is class 0
    segments = np.repeat(np.arange(1, 5), 24).reshape(height, width).astype(np.int32)
    labels = np.zeros((height, width), dtype=np.uint8)
    labels[segments == 3] = 2  # planted error
    for name in ("abc", "alc", "cil-mean"):
        result = score_segments(name, probs, labels, segments, class_weight=np.ones(3))
        assert result.ids[np.argmax(result.scores)] == 3, name


def test_abc_with_unit_weights_is_alc() -> None:
    probs, labels, segments = make_inputs(4)
    a = abc(probs, labels, segments, class_weight=np.ones(probs.shape[0]))
    b = alc(probs, labels, segments)
    np.testing.assert_allclose(a.scores, b.scores)


def test_rare_class_weight_raises_its_segments() -> None:
    probs, labels, segments = make_inputs(6)
    base = abc(probs, labels, segments, class_weight=np.ones(5))
    boosted = abc(probs, labels, segments, class_weight=np.array([1, 1, 1, 1, 0.0]))
    assert np.all(boosted.scores <= base.scores + 1e-12)


def test_cil_mean_and_entropy_by_hand() -> None:
    probs = np.array([[[0.8, 0.5]], [[0.2, 0.5]]], dtype=np.float32)  # C=2, H=1, W=2
    labels = np.array([[1, 255]], dtype=np.uint8)
    segments = np.array([[1, 1]], dtype=np.int32)
    cil = cil_mean(probs, labels, segments)
    # pixel 0: label 1 → 1 − 0.2; pixel 1: label 255 → prediction 0 → 1 − 0.5
    assert cil.scores[0] == pytest.approx((0.8 + 0.5) / 2, rel=1e-6)
    ent = entropy(probs, labels, segments)
    h = lambda p: -(p * np.log(p) + (1 - p) * np.log(1 - p))  # noqa: E731
    assert ent.scores[0] == pytest.approx((h(0.8) + h(0.5)) / 2, rel=1e-5)


def test_random_is_deterministic_under_a_seed() -> None:
    probs, labels, segments = make_inputs(0)
    a = random(probs, labels, segments, rng=np.random.default_rng(3))
    b = random(probs, labels, segments, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a.scores, b.scores)


def test_registry_lists_valid_names() -> None:
    assert ACQUISITIONS.names() == [
        "abc",
        "alc",
        "cil-mean",
        "cleanlab",
        "eg",
        "eg-fp",
        "entropy",
        "hedged",
        "learned",
        "random",
        "validated",
    ]
    with pytest.raises(
        UnknownNameError, match="unknown acquisition function 'bald'; valid names: abc, alc"
    ):
        ACQUISITIONS.get("bald")


def test_abc_requires_a_class_weight() -> None:
    probs, labels, segments = make_inputs(0)
    with pytest.raises(ValueError, match="needs class_weight"):
        score_segments("abc", probs, labels, segments)


def test_shape_errors_name_both_shapes() -> None:
    probs, labels, segments = make_inputs(0)
    with pytest.raises(ValueError, match=r"probs \(5, 20, 30\).*labels \(20, 29\)"):
        abc(probs, labels[:, :-1], segments, class_weight=np.ones(5))
    with pytest.raises(ValueError, match=r"class_weight must be \(5,\)"):
        abc(probs, labels, segments, class_weight=np.ones(4))
    bad = labels.copy()
    bad[0, 0] = 9
    with pytest.raises(ValueError, match="class ids >= C = 5"):
        abc(probs, bad, segments, class_weight=np.ones(5))


@pytest.mark.parametrize("name", ["abc", "alc", "cil-mean", "entropy", "random"])
def test_image_without_segments_scores_nothing(name: str) -> None:
    probs, labels, _ = make_inputs(0)
    empty = np.zeros(labels.shape, dtype=np.int32)
    result = score_segments(
        name, probs, labels, empty, class_weight=np.ones(5), rng=np.random.default_rng(0)
    )
    assert result.ids.size == 0
    assert result.scores.size == 0
