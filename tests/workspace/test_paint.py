"""Painted answers: a person splits a mixed segment, applied pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from a2lc.errors import WorkspaceError
from a2lc.workspace import Answer, Workspace
from a2lc.workspace.annotation import AnnotationDesk


def _first_query(ws: Workspace) -> tuple[str, int, np.ndarray]:
    query = ws.unanswered(1)[0]
    segment = ws.read_segments(query.image_id) == query.segment_id
    return query.image_id, query.segment_id, segment


def test_a_painted_answer_sets_exactly_the_painted_pixels(open_round: Path) -> None:
    with Workspace.open(open_round) as ws:
        image_id, segment_id, segment = _first_query(ws)
        before = ws.read_labels(image_id)
        paint = np.full(segment.shape, -1, np.int16)
        rows, cols = np.nonzero(segment)
        half = rows < np.median(rows)  # the upper half of the segment is class 3
        paint[rows[half], cols[half]] = 3
        paint[rows[~half][:1], cols[~half][:1]] = 255  # one pixel void
        ws.record_answers(1, [Answer(image_id, segment_id, 1, "ann", paint=paint)])
        after = ws.read_labels(image_id)
        expected = np.where(segment, np.uint8(1), before)
        expected = np.where(segment & (paint >= 0), paint.astype(np.uint8), expected)
        np.testing.assert_array_equal(after, expected)  # every pixel as painted
        (row,) = [c for c in ws.corrections(1) if c["segment_id"] == segment_id]
        assert row["relabel"] == 1
        counts = np.bincount(expected[segment & (expected != 255)])
        assert row["after"] == counts.argmax()  # the segment's class: its majority


def test_undo_takes_a_painting_back(open_round: Path) -> None:
    with Workspace.open(open_round) as ws:
        desk = AnnotationDesk(ws)
        lease = desk.lease("ann")
        assert lease is not None
        image_id, segment_id = lease.query.image_id, lease.query.segment_id
        segment = ws.read_segments(image_id) == segment_id
        before = ws.read_labels(image_id)
        paint = np.where(segment, np.int16(2), np.int16(-1))
        desk.answer("ann", image_id, segment_id, None, paint=paint)
        assert (ws.read_labels(image_id)[segment] == 2).all()
        desk.undo("ann")
        np.testing.assert_array_equal(ws.read_labels(image_id), before)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("outside", "outside the segment"),
        ("class", "painted values must be classes"),
        ("shape", "they must match"),
        ("empty", "nothing is painted"),
    ],
)
def test_bad_paintings_change_nothing(open_round: Path, change: str, message: str) -> None:
    with Workspace.open(open_round) as ws:
        image_id, segment_id, segment = _first_query(ws)
        paint = np.full(segment.shape, -1, np.int16)
        paint[segment] = 2
        if change == "outside":
            paint[~segment] = 2
        elif change == "class":
            paint[segment] = 99
        elif change == "shape":
            paint = paint[:-1]
        else:
            paint[:] = -1
        with pytest.raises(WorkspaceError, match=message):
            ws.record_answers(1, [Answer(image_id, segment_id, None, "ann", paint=paint)])
        assert ws.corrections(1) == []
        assert not (open_round / "paints").exists()


def test_the_pixel_exact_simulated_annotator(open_round: Path) -> None:
    from a2lc.steps.answers import answer_with_oracle

    with Workspace.open(open_round) as ws:
        queries = ws.unanswered(1)
        answer_with_oracle(ws, 1, show_progress=False, exact=True)
        for q in queries:
            segment = ws.read_segments(q.image_id) == q.segment_id
            truth = ws.read_ground_truth(q.image_id)
            labels = ws.read_labels(q.image_id)
            known = segment & (truth != 255)
            np.testing.assert_array_equal(labels[known], truth[known])  # 100% on the segment
