"""People answering a round's queries: leases, answers, undo and progress.

A query is leased to one annotator at a time; a lease not renewed within its
time to live expires and the query goes back to the pool. Every answer is
committed in its own transaction the moment it arrives, and only by the
annotator holding the lease. All state lives in the workspace database, so a
restarted server continues where it stopped.
"""

from __future__ import annotations

import sqlite3
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from a2lc.errors import A2LCError
from a2lc.workspace.workspace import Answer, Query, Workspace

DEFAULT_LEASE_SECONDS = 120.0
"""How long a query stays reserved for an annotator who does not answer it (the page
also gives its lease back when it is closed or hidden, so this is the fallback)."""


class LeaseError(A2LCError):
    """The annotator does not hold (or no longer holds) the lease on that query."""


@dataclass(frozen=True)
class Lease:
    query: Query
    annotator: str
    expires_at: float
    """Unix seconds."""


@dataclass(frozen=True)
class Progress:
    answered: int
    total: int
    leased: int
    by_annotator: dict[str, int]


class Desk:
    """What a desk handing out leases over ``ws`` holds: the lease lifetime and the clock."""

    def __init__(
        self,
        ws: Workspace,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < lease_seconds <= 86_400:  # refuses nan and inf too
            raise ValueError(f"lease_seconds must be in (0, 86400], got {lease_seconds}")
        self.ws = ws
        self.lease_seconds = lease_seconds
        self._clock = clock

    def _now(self) -> float:
        return float(self._clock())


class AnnotationDesk(Desk):
    """Leases and answers for the open round of ``ws`` (``lease_seconds``: lease lifetime)."""

    def round_index(self) -> int:
        info = self.ws.open_round()
        if info is None:
            raise LeaseError(
                "no open round: start one with `a2lc run --oracle human` (it stops once the "
                "round's queries are recorded)"
            )
        return info.round

    def lease(self, annotator: str) -> Lease | None:
        """The annotator's current lease (renewed), else the best-ranked free query, else None."""
        annotator = canonical_name(annotator)
        round_index = self.round_index()
        now = self._now()
        expires = now + self.lease_seconds
        with self.ws.transaction() as db:
            db.execute("DELETE FROM leases WHERE round = ? AND expires_at <= ?", (round_index, now))
            row = db.execute(
                "SELECT image_id, segment_id FROM leases WHERE round = ? AND annotator = ? "
                "ORDER BY expires_at LIMIT 1",
                (round_index, annotator),
            ).fetchone()
            if row is None:
                row = db.execute(
                    "SELECT q.image_id, q.segment_id FROM queries q WHERE q.round = ? "
                    "AND NOT EXISTS (SELECT 1 FROM corrections c WHERE c.round = q.round "
                    "AND c.image_id = q.image_id AND c.segment_id = q.segment_id AND c.source = 'manual') "
                    "AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.round = q.round "
                    "AND l.image_id = q.image_id AND l.segment_id = q.segment_id) "
                    "ORDER BY q.rank LIMIT 1",
                    (round_index,),
                ).fetchone()
                if row is None:
                    return None
                db.execute(
                    "INSERT INTO leases(round, image_id, segment_id, annotator, expires_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (round_index, row[0], row[1], annotator, expires),
                )
            else:
                db.execute(
                    "UPDATE leases SET expires_at = ? WHERE round = ? AND image_id = ? AND segment_id = ?",
                    (expires, round_index, row[0], row[1]),
                )
            query = _query(db, round_index, row[0], row[1])
        return Lease(query=query, annotator=annotator, expires_at=expires)

    def answer(
        self,
        annotator: str,
        image_id: str,
        segment_id: int,
        label: int | None,
        *,
        paint: np.ndarray | None = None,
    ) -> None:
        """Commit one answer (None = confirm the current label, 255 = void) under a valid lease.

        ``paint``: parts of the segment painted another class (see :class:`Answer`).
        """
        annotator = canonical_name(annotator)
        round_index = self.round_index()
        answer = Answer(image_id, int(segment_id), label, annotator, paint=paint)
        self.ws.validate_answers(round_index, [answer])
        # Checked before a painting is written, and again inside the answer's transaction.
        self._check_lease(self.ws.connection, round_index, annotator, image_id, int(segment_id))
        painted = self.ws.store_paints(round_index, [answer])
        with self.ws.transaction() as db:
            self._check_lease(db, round_index, annotator, image_id, int(segment_id))
            Workspace.write_answers(db, round_index, [answer], painted=painted)
            db.execute(
                "DELETE FROM leases WHERE round = ? AND image_id = ? AND segment_id = ?",
                (round_index, image_id, int(segment_id)),
            )

    def _check_lease(
        self,
        db: sqlite3.Connection,
        round_index: int,
        annotator: str,
        image_id: str,
        segment_id: int,
    ) -> None:
        """Raise :class:`LeaseError` unless the annotator holds a live lease on the query."""
        row = db.execute(
            "SELECT annotator, expires_at FROM leases WHERE round = ? AND image_id = ? AND segment_id = ?",
            (round_index, image_id, segment_id),
        ).fetchone()
        if row is None or row[1] <= self._now():
            raise LeaseError(
                f"the lease on {image_id}/{segment_id} expired or was never given; ask for the next query"
            )
        if row[0] != annotator:
            raise LeaseError(f"{image_id}/{segment_id} is leased to another annotator")

    def release(self, annotator: str) -> int:
        """Give the annotator's leases of the open round back to the pool; returns how many."""
        annotator = canonical_name(annotator)
        current = self.ws.open_round()
        if current is None:
            return 0
        with self.ws.transaction() as db:
            cursor = db.execute(
                "DELETE FROM leases WHERE round = ? AND annotator = ?", (current.round, annotator)
            )
            return int(cursor.rowcount)

    def undo(self, annotator: str) -> Query | None:
        """Take back the annotator's last answer of the open round; lease that query to them again."""
        annotator = canonical_name(annotator)
        round_index = self.round_index()
        expires = self._now() + self.lease_seconds
        with self.ws.transaction() as db:
            row = db.execute(
                "SELECT id, image_id, segment_id, before, prev_assigned, prev_origin, "
                "prev_origin_round, prev_paint "
                "FROM corrections WHERE round = ? AND source = 'manual' AND annotator = ? "
                "ORDER BY id DESC LIMIT 1",
                (round_index, annotator),
            ).fetchone()
            if row is None:
                return None
            correction_id, image_id, segment_id, before, assigned, origin, origin_round, paint = row
            if origin is None:
                raise LeaseError("this answer predates undo support and cannot be taken back")
            db.execute("DELETE FROM corrections WHERE id = ?", (correction_id,))
            db.execute(
                "UPDATE segments SET label = ?, assigned = ?, origin = ?, origin_round = ?, "
                "paint = ? WHERE image_id = ? AND segment_id = ?",
                (before, assigned, origin, origin_round, paint, image_id, segment_id),
            )
            # Any lease the annotator holds goes back; the undone query is theirs again.
            db.execute(
                "DELETE FROM leases WHERE round = ? AND annotator = ?", (round_index, annotator)
            )
            db.execute(
                "INSERT OR REPLACE INTO leases(round, image_id, segment_id, annotator, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (round_index, image_id, segment_id, annotator, expires),
            )
            return _query(db, round_index, image_id, segment_id)

    def progress(self) -> Progress:
        round_index = self.round_index()
        db = self.ws.connection
        total = db.execute(
            "SELECT COUNT(*) FROM queries WHERE round = ?", (round_index,)
        ).fetchone()[0]
        by_annotator = {
            str(name or "(unnamed)"): int(n)
            for name, n in db.execute(
                "SELECT annotator, COUNT(*) FROM corrections WHERE round = ? AND source = 'manual' "
                "GROUP BY annotator ORDER BY annotator",
                (round_index,),
            )
        }
        leased = db.execute(
            "SELECT COUNT(*) FROM leases WHERE round = ? AND expires_at > ?",
            (round_index, self._now()),
        ).fetchone()[0]
        return Progress(
            answered=sum(by_annotator.values()),
            total=int(total),
            leased=int(leased),
            by_annotator=by_annotator,
        )


MAX_NAME_LENGTH = 64


def _query(db: sqlite3.Connection, round_index: int, image_id: str, segment_id: int) -> Query:
    score, rank = db.execute(
        "SELECT score, rank FROM queries WHERE round = ? AND image_id = ? AND segment_id = ?",
        (round_index, image_id, segment_id),
    ).fetchone()
    return Query(str(image_id), int(segment_id), float(score), int(rank))


def canonical_name(annotator: object) -> str:
    """The one form of an annotator name that every check and record uses.

    Unicode NFKC (so look-alike forms such as a no-break space or full-width letters
    become their plain characters), runs of whitespace collapsed to one space and
    trimmed. Case is kept and counts ("Alice" and "alice" are two annotators).
    Raises :class:`LeaseError` for an empty, over-long (:data:`MAX_NAME_LENGTH`) or
    non-printable name, before anything is stored.
    """
    if not isinstance(annotator, str):
        raise LeaseError("give an annotator name")
    if len(annotator) > 4 * MAX_NAME_LENGTH:  # refused before any work on it
        raise LeaseError(f"annotator names are printable and at most {MAX_NAME_LENGTH} characters")
    name = " ".join(unicodedata.normalize("NFKC", annotator).split())
    if not name:
        raise LeaseError("give an annotator name")
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise LeaseError(f"annotator names are printable and at most {MAX_NAME_LENGTH} characters")
    return name
