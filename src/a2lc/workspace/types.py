"""The workspace's record types: queries, answers, rounds and segment tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Query:
    """A segment selected for annotation in a round, with its score and rank (0 = best)."""

    image_id: str
    segment_id: int
    score: float
    rank: int


@dataclass(frozen=True)
class Answer:
    """An annotator's answer for one queried segment.

    ``label`` is the class the whole segment should have (255 = void), or None
    to keep the segment's current labels unchanged. ``paint``: ``H×W`` int16, the
    classes a person painted over parts of the segment (``-1`` elsewhere; see
    :mod:`a2lc.workspace.paint`); they override ``label`` pixel by pixel.
    """

    image_id: str
    segment_id: int
    label: int | None
    annotator: str | None = None
    paint: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RoundInfo:
    round: int
    status: Literal["querying", "closed"]
    strategy: str
    budget: int
    config: dict[str, Any]
    started_at: str
    finished_at: str | None


@dataclass(frozen=True)
class SegmentTable:
    """The segments of one image (``(Q,)`` arrays, ascending segment id)."""

    ids: np.ndarray
    pixel_count: np.ndarray
    label: np.ndarray
    assigned: np.ndarray  # class painted over the segment, -1 = none
    origin: np.ndarray  # object array of "initial" | "manual" | "auto"
    origin_round: np.ndarray
    paint: np.ndarray  # object array: a painted answer's file (relative), or None


@dataclass(frozen=True)
class PoolSegments:
    """Every segment of the pool as ``(N,)`` columns, by image (pool order), then segment id."""

    image_index: np.ndarray  # int64 position of the image in Workspace.samples
    segment_id: np.ndarray  # int64
    label: np.ndarray  # int64 current majority label
    manual: np.ndarray  # bool: labelled by a person: corrected manually, or in a hand-labelled
    # image (never queried again, never auto-corrected)
    pixel_count: np.ndarray  # int64

    def rows(self, image_index: np.ndarray, segment_id: np.ndarray) -> np.ndarray:
        """Row of each (image index, segment id) pair; ``KeyError`` names a pair that is missing."""
        table = _pair_key(self.image_index, self.segment_id)
        wanted = _pair_key(np.asarray(image_index), np.asarray(segment_id))
        rows = np.searchsorted(table, wanted)
        found = rows < table.size
        found[found] = table[rows[found]] == wanted[found]
        if not found.all():
            i = int(np.flatnonzero(~found)[0])
            raise KeyError(
                f"no segment {int(np.asarray(segment_id)[i])} in image #{int(np.asarray(image_index)[i])}"
            )
        return rows


def _pair_key(image_index: np.ndarray, segment_id: np.ndarray) -> np.ndarray:
    return (image_index.astype(np.int64) << 32) | segment_id.astype(np.int64)
