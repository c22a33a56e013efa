"""What the pool holds: its segments as tables, and which images ground truth measures.

A mixin of :class:`~a2lc.workspace.Workspace`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

import numpy as np

from a2lc.workspace.types import PoolSegments, SegmentTable

if TYPE_CHECKING:
    from a2lc.data.sample import Dataset, Sample


class PoolMixin:
    """Segment tables and the ground-truth image lists (see the module doc)."""

    if TYPE_CHECKING:
        _db: sqlite3.Connection

        def meta(self, key: str, default: str | None = None) -> str | None: ...
        @property
        def dataset(self) -> Dataset: ...
        @property
        def samples(self) -> tuple[Sample, ...]: ...

    @property
    def has_ground_truth(self) -> bool:
        """Whether every pool image has ground truth (the simulated annotator needs that)."""
        return self.dataset.has_ground_truth

    @property
    def ground_truth_ids(self) -> list[str]:
        """Pool images with ground truth, in pool order."""
        return [s.id for s in self.samples if s.gt_path is not None]

    @property
    def hand_labelled_ids(self) -> list[str]:
        """Pool images a person labelled: with ground truth for only part of the pool,
        the images that have it (their labels are the person's, kept as they are).
        With ground truth for every image (a benchmark), none: there it stands for the
        simulated annotator."""
        return [] if self.has_ground_truth else self.ground_truth_ids

    @property
    def seed_image_ids(self) -> list[str]:
        """Pool images the seed model was trained on (``pseudo-label``), in pool order."""
        try:
            parameters = json.loads(self.meta("initial_parameters") or "{}")
            chosen = parameters.get("seed_image_ids") or []
        except (json.JSONDecodeError, AttributeError):
            chosen = []
        wanted = {str(i) for i in chosen} if isinstance(chosen, list) else set()
        return [s.id for s in self.samples if s.id in wanted]

    @property
    def measured_ids(self) -> list[str]:
        """Pool images whose labels data mIoU measures: those with ground truth that a
        person did not label and the seed model did not train on (on those the labels
        are the ground truth, or were fitted to it)."""
        skip = set(self.hand_labelled_ids) | set(self.seed_image_ids)
        return [i for i in self.ground_truth_ids if i not in skip]

    # ------------------------------------------------------------------ segments

    def segment_table(self, image_id: str) -> SegmentTable:
        rows = self._db.execute(
            "SELECT segment_id, pixel_count, label, COALESCE(assigned, -1), origin, origin_round, "
            "paint FROM segments WHERE image_id = ? ORDER BY segment_id",
            (image_id,),
        ).fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [()] * 7
        return SegmentTable(
            ids=np.asarray(columns[0], dtype=np.int64),
            pixel_count=np.asarray(columns[1], dtype=np.int64),
            label=np.asarray(columns[2], dtype=np.int64),
            assigned=np.asarray(columns[3], dtype=np.int64),
            origin=np.asarray(columns[4], dtype=object),
            origin_round=np.asarray(columns[5], dtype=np.int64),
            paint=np.asarray(columns[6], dtype=object),
        )

    def manual_segments(self, *, before_round: int | None = None) -> dict[str, np.ndarray]:
        """Per image, ids of segments a person labelled: corrected manually in rounds
        ``< before_round`` (all if None), and the segments of hand-labelled images."""
        limit = before_round if before_round is not None else 1 << 62
        result: dict[str, list[int]] = {}
        for image_id, segment_id in self._db.execute(
            "SELECT image_id, segment_id FROM corrections "
            "WHERE source = 'manual' AND round < ? "
            "UNION SELECT image_id, segment_id FROM segments WHERE given = 1 "
            "ORDER BY image_id, segment_id",
            (limit,),
        ):
            result.setdefault(str(image_id), []).append(int(segment_id))
        return {k: np.asarray(v, dtype=np.int64) for k, v in result.items()}

    def num_segments(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM segments").fetchone()[0])

    def pool_segments(self) -> PoolSegments:
        """Every segment of the pool in one query, as columns (see :class:`PoolSegments`)."""
        rows = self._db.execute(
            "SELECT s.idx, g.segment_id, g.label, g.origin = 'manual' OR g.given = 1, g.pixel_count "
            "FROM segments g "
            "JOIN samples s ON s.id = g.image_id ORDER BY s.idx, g.segment_id"
        ).fetchall()
        columns = np.asarray(rows, dtype=np.int64).reshape(-1, 5)
        return PoolSegments(
            image_index=columns[:, 0].copy(),
            segment_id=columns[:, 1].copy(),
            label=columns[:, 2].copy(),
            manual=columns[:, 3].astype(bool),
            pixel_count=columns[:, 4].copy(),
        )

    def segment_labels(self) -> dict[str, SegmentTable]:
        """Segment tables of every image, by image id (one query per image)."""
        return {s.id: self.segment_table(s.id) for s in self.samples}
