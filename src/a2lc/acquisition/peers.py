"""Peer baselines from other libraries, scored per segment (optional extras).

``cleanlab``: cleanlab's semantic-segmentation label-quality scores (its
``segmentation.rank.get_label_quality_scores``: per pixel the model's probability
of the given label), aggregated over each segment's pixels with cleanlab's own
softmin (temperature 0.1, as cleanlab aggregates an image). The segment's score
is ``1 − quality``, so low-quality labels are queried first. Pixels labelled 255
take the model's prediction as their label, as in ABC.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from a2lc.acquisition.statistics import check_inputs
from a2lc.data.sample import IGNORE_INDEX
from a2lc.data.segments import id_lookup, segment_sizes
from a2lc.errors import MissingDependencyError

CLEANLAB_TEMPERATURE = 0.1
"""cleanlab's default softmin temperature for segmentation label quality."""


def _cleanlab() -> Any:
    try:
        import cleanlab.internal.multilabel_scorer as scorer
        import cleanlab.segmentation.rank as rank
    except ImportError:
        raise MissingDependencyError(
            'the cleanlab acquisition needs the cleanlab package: pip install "a2lc[cleanlab]"'
        ) from None
    return rank, scorer


def cleanlab_quality(
    probs: np.ndarray,
    labels: np.ndarray,
    segments: np.ndarray,
    *,
    temperature: float = CLEANLAB_TEMPERATURE,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment ids ``(M,)`` and cleanlab's label quality ``(M,)`` in [0, 1] (1 = surely right)."""
    check_inputs(probs, labels, segments)
    rank, scorer = _cleanlab()
    given = np.where(labels == IGNORE_INDEX, probs.argmax(axis=0), labels).astype(np.int64)
    _, pixel_scores = rank.get_label_quality_scores(
        given[None], np.asarray(probs, dtype=np.float32)[None], verbose=False
    )
    ids, _ = segment_sizes(segments)
    rows = id_lookup(segments, ids)
    scores = pixel_scores[0].ravel()
    order = np.argsort(rows, kind="stable")
    bounds = np.searchsorted(rows[order], np.arange(ids.size + 1))
    quality = np.empty(ids.size)
    for m in range(ids.size):
        members = scores[order[bounds[m] : bounds[m + 1]]]
        quality[m] = float(
            scorer.softmin(members[None].astype(np.float64), temperature=temperature, axis=1)[0]
        )
    return ids.astype(np.int32), quality
