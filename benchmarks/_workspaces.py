"""Workspaces the benchmarks measure on (cheap and deterministic: no seed model)."""

from __future__ import annotations

from typing import Any

FLIP_SHARE = 0.15
"""Share of segments whose initial label is flipped to another class."""


def flipped_gt_proxy_maps(ws: Any, *, seed: int, flip_share: float = FLIP_SHARE) -> None:
    """Initial maps for a benchmark: gt-proxy segments, their ground-truth majority label,
    ``flip_share`` of them flipped to another class (deterministic for ``seed``)."""
    import numpy as np

    from a2lc.data.segments import majority_labels, paint_segments, segment_sizes
    from a2lc.pseudo_labels.segments import gt_proxy_segments

    def maps() -> Any:
        for index, sample in enumerate(ws.samples):
            truth = ws.read_ground_truth(sample.id)
            rng = np.random.default_rng([seed, index])
            segments = gt_proxy_segments(truth, rng=rng)
            ids, _ = segment_sizes(segments)
            labels = majority_labels(truth, segments, ids).astype(np.int64)
            flip = rng.random(ids.size) < flip_share
            shift = rng.integers(1, ws.num_classes, size=ids.size)
            real = labels != 255
            labels[flip & real] = (labels[flip & real] + shift[flip & real]) % ws.num_classes
            painted = paint_segments(
                np.full(truth.shape, 255, np.uint8), segments, ids, labels.astype(np.uint8)
            )
            yield sample.id, segments, painted

    ws.set_initial_maps(maps(), source="benchmark", parameters={"flip_share": flip_share})
