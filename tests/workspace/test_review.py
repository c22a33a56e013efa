"""Reviewing automatic changes: queue, leases, verdicts as answers, undo (issue #36)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from a2lc.workspace import Workspace
from a2lc.workspace.annotation import LeaseError
from a2lc.workspace.review import ReviewDesk
from tests.conftest import REVIEW_CHANGES


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def state(path: Path) -> tuple[list[Any], list[Any], dict[str, bytes]]:
    with Workspace.open(path, read_only=True) as ws:
        db = ws.connection
        return (
            db.execute("SELECT * FROM segments ORDER BY image_id, segment_id").fetchall(),
            db.execute(
                "SELECT id, round, image_id, segment_id, before, after, source, reverted_by "
                "FROM corrections ORDER BY id"
            ).fetchall(),
            {s.id: ws.read_labels(s.id).tobytes() for s in ws.samples},
        )


def test_the_queue_is_a_fixed_shuffle_not_the_most_confident_first(with_changes: Path) -> None:
    with Workspace.open(with_changes) as ws:
        desk = ReviewDesk(ws, clock=Clock())
        order = []
        for name in (f"r{i}" for i in range(REVIEW_CHANGES)):
            lease = desk.lease(name)
            assert lease is not None
            order.append(lease.change)
        assert desk.lease("one more") is None  # every change is leased
        ids = [c.id for c in order]
        assert len(set(ids)) == REVIEW_CHANGES
        assert ids != sorted(ids)  # not in the order made, i.e. not by confidence
        confidence = [c.confidence for c in order]
        assert confidence != sorted(confidence, reverse=True)
        assert desk.progress().left == REVIEW_CHANGES
        # The same order in another process (it depends on the ids alone).
        for name in (f"r{i}" for i in range(REVIEW_CHANGES)):
            desk.release(name)
        again = [desk.lease(f"s{i}") for i in range(3)]
        assert [lease.change.id for lease in again if lease] == ids[:3]


def test_accept_and_revert_are_answers_and_undo_restores_exactly(with_changes: Path) -> None:
    with Workspace.open(with_changes) as ws:
        before_any_review = state(with_changes)
        desk = ReviewDesk(ws, clock=Clock())
        first = desk.lease("bob")
        assert first is not None
        change = desk.verdict("bob", first.change.id, "accept")
        row = ws.connection.execute(
            "SELECT origin, label FROM segments WHERE image_id = ? AND segment_id = ?",
            (change.image_id, change.segment_id),
        ).fetchone()
        assert tuple(row) == ("manual", change.after)  # a person's from now on
        after_accept = state(with_changes)

        second = desk.lease("bob")
        assert second is not None
        assert second.change.id != change.id
        target = second.change
        desk.verdict("bob", target.id, "revert")
        segments = ws.read_segments(target.image_id) == target.segment_id
        labels = ws.read_labels(target.image_id)
        assert (labels[segments] == target.before).all()
        manual = [
            c for c in ws.corrections(1) if c["source"] == "manual" and c["annotator"] == "bob"
        ]
        assert [(c["segment_id"], c["after"]) for c in manual] == [
            (change.segment_id, change.after),
            (target.segment_id, target.before),
        ]
        assert (target.image_id, target.segment_id, target.after) in ws.rejected_changes()
        assert len(ws.automatic_changes()) == REVIEW_CHANGES - 1  # the reverted one is out
        assert [(e.reviewed, e.accepted) for e in desk.evidence()] == [(2, 1)]
        assert desk.progress().reviewed == 2
        assert desk.progress().left == REVIEW_CHANGES - 2

        # Undo the revert: the change is back in force, byte for byte, and bob holds it.
        assert desk.undo("bob") == target
        assert state(with_changes) == after_accept
        lease = desk.lease("bob")
        assert lease is not None
        assert lease.change.id == target.id
        # Undo the accept too: everything as before any review.
        desk.undo("bob")
        desk.release("bob")
        assert state(with_changes) == before_any_review
        assert desk.undo("bob") is None


def test_only_the_lease_holder_judges_and_bad_verdicts_change_nothing(
    with_changes: Path,
) -> None:
    clock = Clock()
    with Workspace.open(with_changes) as ws:
        desk = ReviewDesk(ws, lease_seconds=30, clock=clock)
        lease = desk.lease("ann")
        other = desk.lease("ben")
        assert lease is not None
        assert other is not None
        untouched = state(with_changes)
        with pytest.raises(LeaseError, match="another reviewer"):
            desk.verdict("ben", lease.change.id, "accept")
        with pytest.raises(LeaseError, match="verdict 'maybe'"):
            desk.verdict("ann", lease.change.id, "maybe")
        with pytest.raises(LeaseError, match="not leased to you"):
            desk.verdict("ann", 10_000, "accept")
        clock.now += 31  # the lease expired
        with pytest.raises(LeaseError, match="not leased to you"):
            desk.verdict("ann", lease.change.id, "revert")
        assert state(with_changes) == untouched
        # Expired leases go back to the queue: someone else gets it.
        assert desk.lease("cat") is not None


def test_a_change_answered_since_leaves_the_queue(with_changes: Path) -> None:
    with Workspace.open(with_changes) as ws:
        desk = ReviewDesk(ws, clock=Clock())
        lease = desk.lease("ann")
        assert lease is not None
        ws.revert_automatic_changes(1)  # everything taken back by the CLI's revert
        assert desk.progress().left == 0
        with pytest.raises(LeaseError, match="no longer in force"):
            desk.verdict("ann", lease.change.id, "accept")
        assert desk.lease("ann") is None


def test_status_and_the_report_count_reviews_per_class_pair(
    with_changes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from a2lc.cli import main

    with Workspace.open(with_changes) as ws:
        desk = ReviewDesk(ws, clock=Clock())
        for verdict in ("accept", "revert", "accept"):
            lease = desk.lease("ann")
            assert lease is not None
            desk.verdict("ann", lease.change.id, verdict)
    assert main(["status", "-w", str(with_changes)]) == 0
    out = capsys.readouterr().out
    assert "reviewed (accepted)" in out
    assert "accepted / reviewed estimates the changes' precision" in out
    assert main(["status", "-w", str(with_changes), "--json"]) == 0
    import json

    groups = json.loads(capsys.readouterr().out)["automatic_changes"]
    assert sum(g["reviewed"] for g in groups) == 3
    assert sum(g["accepted"] for g in groups) == 2
    assert sum(g["reverted"] for g in groups) == 1
    report = tmp_path / "report.html"
    assert main(["report", "-w", str(with_changes), "--out", str(report)]) == 0
    assert "reviewed (accepted)" in report.read_text()
