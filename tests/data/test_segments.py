from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import a2lc.data.segments as segments_module
from a2lc.data.segments import id_lookup, pool_features


def _pool_one_entry_per_pixel(
    segments: np.ndarray, ids: np.ndarray, features: list[np.ndarray]
) -> np.ndarray:
    """The construction ``pool_features`` replaces: a COO matrix with one entry per pixel."""
    rows = id_lookup(segments, ids)
    covered = rows >= 0
    height, width = segments.shape
    ys, xs = np.nonzero(covered.reshape(segments.shape))
    row = rows[covered]
    sizes = np.bincount(row, minlength=len(ids)).astype(np.float64)
    parts = []
    for array in features:
        channels, fh, fw = array.shape
        cell = (ys * fh // height) * fw + (xs * fw // width)
        counts = sparse.csr_matrix((np.ones(row.size), (row, cell)), shape=(len(ids), fh * fw))
        parts.append(np.asarray(counts @ array.reshape(channels, -1).T))
    return (np.hstack(parts) / np.maximum(sizes, 1.0)[:, None]).astype(np.float32)


def _blocky_segments(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    coarse = rng.integers(0, 60, size=(shape[0] // 6 + 1, shape[1] // 5 + 1))
    return np.repeat(np.repeat(coarse, 6, 0), 5, 1)[: shape[0], : shape[1]].astype(np.int32)


@pytest.mark.parametrize("dense", [True, False])
def test_pool_features_is_the_per_pixel_construction_bit_for_bit(
    dense: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not dense:
        monkeypatch.setattr(segments_module, "DENSE_PAIR_LIMIT", 0)
    rng = np.random.default_rng(3)
    for shape in ((90, 120), (37, 53)):
        segments = _blocky_segments(rng, shape)
        present = np.unique(segments)
        # A subset, in no particular order, one id absent from the map; id 0 left out.
        ids = np.concatenate([rng.permutation(present[present > 0])[:25], [10_000]])
        features = [
            rng.standard_normal((7, (shape[0] + 7) // 8, (shape[1] + 7) // 8)).astype(np.float32),
            rng.standard_normal((5, (shape[0] + 15) // 16, (shape[1] + 15) // 16)).astype(
                np.float32
            ),
        ]
        pooled = pool_features(segments, ids, features)
        assert pooled.dtype == np.float32
        assert pooled.shape == (ids.size, 12)
        np.testing.assert_array_equal(pooled, _pool_one_entry_per_pixel(segments, ids, features))
        np.testing.assert_array_equal(pooled[-1], 0.0)  # no pixel: zeros


def test_pool_features_is_the_mean_of_the_cells_under_each_segment() -> None:
    segments = np.zeros((4, 4), dtype=np.int32)
    segments[:2, :2] = 1  # cell (0, 0) only
    segments[2:, :] = 2  # half in cell (1, 0), half in cell (1, 1)
    features = [np.arange(4, dtype=np.float32).reshape(1, 2, 2)]
    pooled = pool_features(segments, np.array([2, 1]), features)
    np.testing.assert_array_equal(pooled, [[2.5], [0.0]])
