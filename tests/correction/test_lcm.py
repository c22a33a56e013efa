from __future__ import annotations

import numpy as np
import pytest

from a2lc.correction.lcm import (
    CITYSCAPES_THRESHOLDS,
    LCMConfig,
    class_balanced_weights,
    fit_and_predict,
    segment_features,
    select_relabels,
    tail_classes,
)
from a2lc.runtime import torch_threads


def test_segment_features_are_mean_probabilities() -> None:
    probs = np.zeros((2, 2, 3), dtype=np.float32)
    probs[0] = [[1.0, 0.5, 0.0], [0.2, 0.2, 0.2]]
    probs[1] = 1 - probs[0]
    segments = np.array([[1, 1, 0], [4, 4, 4]])
    ids, features = segment_features(probs, segments)
    assert ids.tolist() == [1, 4]
    np.testing.assert_allclose(features, [[0.75, 0.25], [0.2, 0.8]], rtol=1e-6)


def test_class_balanced_weights() -> None:
    weights = class_balanced_weights(np.array([0, 0, 0, 2]), 4)
    # N/n: class 0 → 4/3, class 2 → 4; normalised to sum 1; unseen classes 0.
    np.testing.assert_allclose(weights, [0.25, 0, 0.75, 0], rtol=1e-6)


def test_tail_classes_count_after_labels_and_break_ties_by_id() -> None:
    after = np.array([0, 0, 0, 1, 1, 3, 255, 255, 255, 255])
    tail = tail_classes(after, 5)
    # counts: 0→3, 1→2, 2→0, 3→1, 4→0; fewest first, ties by id: 2, 4, 3, 1, 0
    assert tail.tolist() == [2, 4]
    assert tail_classes(after, 7).tolist() == [2, 4, 5]


def test_select_relabels_applies_every_guard() -> None:
    tail = np.array([3, 4])  # c* = 3
    current = np.array([0, 0, 0, 0, 3, 1, 0])
    predicted = np.array([1, 1, 0, 4, 1, 2, 1])
    confidence = np.array([0.999, 0.98, 1.0, 1.0, 1.0, 1.0, 1.0])
    eligible = np.array([True, True, True, True, True, True, False])
    chosen = select_relabels(
        current, predicted, confidence, eligible=eligible, tail=tail, threshold=0.99
    )
    # 0: ok; 1: below τ; 2: same class; 3: ŷ in tail; 4: y = c*; 5: ok; 6: queried before
    assert chosen.tolist() == [True, False, False, False, False, True, False]


def test_thresholds_per_round() -> None:
    config = LCMConfig()
    assert [config.threshold(r) for r in range(1, 7)] == [
        *CITYSCAPES_THRESHOLDS,
        CITYSCAPES_THRESHOLDS[-1],
    ]


def test_mlp_learns_a_separable_mapping_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    num_classes = 4
    targets = rng.integers(0, num_classes, 64)
    features = np.full((64, num_classes), 0.1, dtype=np.float32)
    features[np.arange(64), targets] = 0.7
    features += rng.normal(0, 0.02, features.shape).astype(np.float32)
    config = LCMConfig(epochs=30, lr=1e-2)
    a = fit_and_predict(features, targets, features, num_classes=num_classes, config=config)
    b = fit_and_predict(features, targets, features, num_classes=num_classes, config=config)
    assert (a.predicted == targets).mean() > 0.95
    np.testing.assert_array_equal(a.predicted, b.predicted)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    # The double softmax saturates: confidences approach 1 on well-separated data.
    assert np.median(a.confidence) > 0.9


def test_predictions_in_chunks_match_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import a2lc.correction.lcm as lcm_module

    rng = np.random.default_rng(1)
    num_classes = 5
    targets = rng.integers(0, num_classes, 40)
    features = rng.dirichlet(np.ones(num_classes), 300).astype(np.float32)
    config = LCMConfig(epochs=3, lr=1e-2)
    whole = fit_and_predict(
        features[:40], targets, features, num_classes=num_classes, config=config
    )
    monkeypatch.setattr(lcm_module, "PREDICT_CHUNK", 64)  # 300 segments: 5 chunks
    parts = fit_and_predict(
        features[:40], targets, features, num_classes=num_classes, config=config
    )
    np.testing.assert_array_equal(parts.predicted, whole.predicted)
    np.testing.assert_allclose(parts.confidence, whole.confidence, rtol=1e-6)
    none = fit_and_predict(
        features[:40], targets, features[:0], num_classes=num_classes, config=config
    )
    assert none.predicted.shape == (0,)
    assert none.confidence.shape == (0,)


@pytest.mark.parametrize("num_classes", [2, 11])
def test_tail_is_half_the_classes(num_classes: int) -> None:
    assert len(tail_classes(np.zeros(0, dtype=int), num_classes)) == num_classes // 2


def _reference_fit_and_predict(
    train_features: np.ndarray,
    train_targets: np.ndarray,
    features: np.ndarray,
    *,
    num_classes: int,
    config: LCMConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """The LCM training loop as first written: torch.optim.Adam, one index per step."""
    import torch
    import torch.nn.functional as F

    from a2lc.correction.lcm_net import LCMNet

    torch.manual_seed(config.seed)
    net = LCMNet(num_classes, hidden=config.hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    x = torch.from_numpy(train_features)
    y = torch.from_numpy(train_targets.astype(np.int64))
    weight = torch.from_numpy(class_balanced_weights(train_targets, num_classes))
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            batch = order[start : start + config.batch_size]
            loss = F.cross_entropy(net(x[batch]), y[batch], weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        confidence, predicted = net(torch.from_numpy(features)).max(dim=1)
    return predicted.numpy(), confidence.numpy()


@pytest.mark.parametrize("queries", [61, 57])  # the last batch holds 5, then 1
def test_fit_and_predict_is_bit_identical_to_torch_adam_loop(queries: int) -> None:
    rng = np.random.default_rng(5)
    num_classes = 7
    features = rng.dirichlet(np.ones(num_classes), size=300).astype(np.float32)
    targets = rng.integers(0, num_classes, size=queries)
    config = LCMConfig(epochs=12, seed=11)
    train = features[:queries]
    got = fit_and_predict(train, targets, features, num_classes=num_classes, config=config)
    with torch_threads(1):
        predicted, confidence = _reference_fit_and_predict(
            train, targets, features, num_classes=num_classes, config=config
        )
    np.testing.assert_array_equal(got.predicted, predicted)
    np.testing.assert_array_equal(got.confidence, confidence.astype(np.float64))


def test_fit_and_predict_runs_on_one_thread_and_restores_the_setting() -> None:
    import torch

    before = torch.get_num_threads()
    seen: list[int] = []
    import a2lc.correction.lcm_net as lcm_net

    original = lcm_net.LCMNet.forward

    def spy(self: lcm_net.LCMNet, features: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return original(self, features)

    lcm_net.LCMNet.forward = spy  # type: ignore[method-assign]
    try:
        torch.set_num_threads(2)
        features = np.eye(3, dtype=np.float32)
        fit_and_predict(features, np.arange(3), features, num_classes=3, config=LCMConfig(epochs=1))
        assert set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        lcm_net.LCMNet.forward = original  # type: ignore[method-assign]
        torch.set_num_threads(before)
