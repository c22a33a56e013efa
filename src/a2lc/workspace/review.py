"""People reviewing automatic changes: a queue, leases, verdicts, undo and progress.

The review queue holds every automatic change that is still in force and was not
reviewed yet: not reverted, and its segment still in the state the change left
(a person answering the segment since, or a later change, takes it out). It is
shown in a fixed pseudo-random order (a keyed hash of the change's id), so the
changes reviewed so far are a uniform sample of those in the queue, whatever the
corrector's confidence: what reviewers find is an honest estimate of the applied
changes' precision (:meth:`ReviewDesk.evidence`).

Each change is leased to one reviewer at a time, with the query leases' rules
(:mod:`a2lc.workspace.annotation`). A verdict is an answer:

* ``accept``: the person confirms the new label: a manual correction of the change's
  round that keeps it (the segment is a person's from then on);
* ``revert``: the change is taken back exactly as ``a2lc revert`` would (the state
  it replaced, recorded as a revert of one change, never proposed again) and the
  person's answer, the old label (or the class they gave instead), is recorded as a
  manual correction.

Both happen in one transaction with the review row; undo takes the reviewer's last
verdict back, also in one transaction, and leases that change to them again.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Literal

from a2lc.data.sample import IGNORE_INDEX
from a2lc.workspace.annotation import Desk, LeaseError, canonical_name
from a2lc.workspace.changes import _COLUMNS, AutoChange, _change
from a2lc.workspace.workspace import Answer
from a2lc.workspace.writes import utc_now

Verdict = Literal["accept", "revert"]
VERDICTS: tuple[Verdict, ...] = ("accept", "revert")


@dataclass(frozen=True)
class ReviewLease:
    change: AutoChange
    annotator: str
    expires_at: float
    """Unix seconds."""


@dataclass(frozen=True)
class ReviewProgress:
    """``reviewed`` verdicts so far, ``left`` changes still to review, ``leased`` now,
    ``by_annotator`` verdicts per reviewer."""

    reviewed: int
    left: int
    leased: int
    by_annotator: dict[str, int]


@dataclass(frozen=True)
class ReviewEvidence:
    """Per ``(round, corrector)``: changes ``reviewed`` and how many were ``accepted``."""

    round: int
    corrector: str
    reviewed: int
    accepted: int


def _order(change_id: int) -> bytes:
    return hashlib.blake2b(f"a2lc review {change_id}".encode(), digest_size=8).digest()


class ReviewDesk(Desk):
    """Review leases and verdicts over ``ws`` (``lease_seconds``: lease lifetime)."""

    @staticmethod
    def _reviewable(db: sqlite3.Connection) -> list[int]:
        """Ids of the changes in force and not reviewed, in the queue's order."""
        ids = [
            int(i)
            for (i,) in db.execute(
                "SELECT c.id FROM corrections c JOIN segments s ON s.image_id = c.image_id "
                "AND s.segment_id = c.segment_id WHERE c.source = 'auto' AND c.reverted_by IS NULL "
                "AND s.origin = 'auto' AND s.origin_round = c.round AND s.label = c.after "
                "AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.change_id = c.id) "
                "AND c.id = (SELECT MAX(e.id) FROM corrections e WHERE e.source = 'auto' "
                "AND e.image_id = c.image_id AND e.segment_id = c.segment_id)"
            )
        ]
        return sorted(ids, key=_order)

    def queue(self) -> list[int]:
        """Ids of the changes waiting for review, in the queue's order."""
        return self._reviewable(self.ws.connection)

    def _get(self, db: sqlite3.Connection, change_id: int) -> AutoChange:
        row = db.execute(
            f"SELECT {_COLUMNS} FROM corrections WHERE id = ?", (change_id,)
        ).fetchone()
        return _change(row)

    def lease(self, annotator: str) -> ReviewLease | None:
        """The reviewer's leased change (renewed), else the next free one, else None."""
        annotator = canonical_name(annotator)
        now = self._now()
        expires = now + self.lease_seconds
        with self.ws.transaction() as db:
            db.execute("DELETE FROM review_leases WHERE expires_at <= ?", (now,))
            row = db.execute(
                "SELECT change_id FROM review_leases WHERE annotator = ? LIMIT 1", (annotator,)
            ).fetchone()
            if row is not None and int(row[0]) not in self._reviewable(db):
                db.execute("DELETE FROM review_leases WHERE annotator = ?", (annotator,))
                row = None  # taken out of the queue meanwhile (answered, reverted)
            if row is None:
                leased = {int(i) for (i,) in db.execute("SELECT change_id FROM review_leases")}
                free = [i for i in self._reviewable(db) if i not in leased]
                if not free:
                    return None
                change_id = free[0]
                db.execute(
                    "INSERT INTO review_leases(change_id, annotator, expires_at) VALUES (?, ?, ?)",
                    (change_id, annotator, expires),
                )
            else:
                change_id = int(row[0])
                db.execute(
                    "UPDATE review_leases SET expires_at = ? WHERE change_id = ?",
                    (expires, change_id),
                )
            change = self._get(db, change_id)
        return ReviewLease(change, annotator, expires)

    def verdict(
        self, annotator: str, change_id: int, verdict: str, *, label: int | None = None
    ) -> AutoChange:
        """Record the reviewer's verdict on the change they hold (one transaction).

        ``label``: with ``revert``, the class the person gives the segment instead of the
        old label (None: the old label, as the change found it)."""
        annotator = canonical_name(annotator)
        with self.ws.transaction() as db:
            held = db.execute(
                "SELECT annotator, expires_at FROM review_leases WHERE change_id = ?",
                (change_id,),
            ).fetchone()
            if held is None or held[1] <= self._now():
                raise LeaseError(
                    f"change {change_id} is not leased to you (the lease expired or it was "
                    "reviewed); take the next one"
                )
            if held[0] != annotator:
                raise LeaseError(f"change {change_id} is leased to another reviewer")
            change = self._judge(db, annotator, change_id, verdict, label)
            db.execute("DELETE FROM review_leases WHERE change_id = ?", (change_id,))
        return change

    def record_verdicts(self, verdicts: list[tuple[int, str, int | None, str]]) -> dict[str, int]:
        """Record ``(change id, verdict, label, annotator)`` made elsewhere (Label Studio),
        without leases, all in one transaction: any invalid one records nothing.

        A change already reviewed with the same verdict is skipped (a re-import);
        returns ``{"recorded": n, "already_recorded": k}``."""
        done = self.verdicts()
        recorded = skipped = 0
        with self.ws.transaction() as db:
            for change_id, verdict, label, annotator in verdicts:
                if done.get(change_id) == verdict:
                    skipped += 1
                    continue
                if change_id in done:
                    raise LeaseError(
                        f"change {change_id} was already reviewed as {done[change_id]!r}; "
                        f"undo that verdict first to record {verdict!r}"
                    )
                self._judge(db, canonical_name(annotator), change_id, verdict, label)
                db.execute("DELETE FROM review_leases WHERE change_id = ?", (change_id,))
                done[change_id] = verdict
                recorded += 1
        return {"recorded": recorded, "already_recorded": skipped}

    def _judge(
        self,
        db: sqlite3.Connection,
        annotator: str,
        change_id: int,
        verdict: str,
        label: int | None,
    ) -> AutoChange:
        """Inside the caller's transaction: check, revert if asked, record the answer."""
        if verdict not in VERDICTS:
            raise LeaseError(f"verdict {verdict!r}: one of {', '.join(VERDICTS)}")
        if label is not None and (verdict != "revert" or isinstance(label, bool)):
            raise LeaseError("a class goes with a revert only")
        if label is not None and not (0 <= label < self.ws.num_classes or label == IGNORE_INDEX):
            raise LeaseError(
                f"class {label} is not 0..{self.ws.num_classes - 1} or {IGNORE_INDEX} (void)"
            )
        if change_id not in self._reviewable(db):
            raise LeaseError(
                f"change {change_id} is no longer in force (reverted, reviewed or answered since)"
            )
        change = self._get(db, change_id)
        if verdict == "accept":  # an answer that keeps the label the change gave
            revert_id = None
            self.ws.write_answers(
                db, change.round, [Answer(change.image_id, change.segment_id, None, annotator)]
            )
            (correction_id,) = db.execute("SELECT last_insert_rowid()").fetchone()
        else:
            revert_id = self._revert_one(db, change)
            correction_id = self._correct(db, change, annotator, label)

        db.execute(
            "INSERT INTO reviews(change_id, annotator, verdict, correction_id, revert_id, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (change_id, annotator, verdict, int(correction_id), revert_id, utc_now()),
        )
        return change

    @staticmethod
    def _correct(
        db: sqlite3.Connection, change: AutoChange, annotator: str, label: int | None
    ) -> int:
        """After :meth:`_revert_one`: the person's correction of the label the change had
        shown them (``before`` = the change's class, ``after`` = the old class, or
        ``label``), recorded with the change's state as the one it replaced (for undo);
        the segment is the person's from now on. Returns the correction's id."""
        after = change.before if label is None else label
        cursor = db.execute(
            "INSERT INTO corrections(round, image_id, segment_id, before, after, relabel, "
            "source, annotator, created_at, prev_assigned, prev_origin, prev_origin_round) "
            "VALUES (?, ?, ?, ?, ?, ?, 'manual', ?, ?, ?, 'auto', ?)",
            (
                change.round,
                change.image_id,
                change.segment_id,
                change.after,
                after,
                int(label is not None),
                annotator,
                utc_now(),
                change.after,
                change.round,
            ),
        )
        # The old class: the exact state the change replaced (its pixels too), now a
        # person's; another class: the whole segment set to it, as an answer does.
        assigned = "assigned" if label is None else "?"
        db.execute(
            f"UPDATE segments SET label = ?, assigned = {assigned}, origin = 'manual', "
            "origin_round = ? WHERE image_id = ? AND segment_id = ?",
            (
                after,
                *(() if label is None else (label,)),
                change.round,
                change.image_id,
                change.segment_id,
            ),
        )
        return int(cursor.lastrowid or 0)

    @staticmethod
    def _revert_one(db: sqlite3.Connection, change: AutoChange) -> int:
        """Put back the state ``change`` replaced, as a revert of one change; its id."""
        assigned, origin, origin_round = db.execute(
            "SELECT prev_assigned, prev_origin, prev_origin_round FROM corrections WHERE id = ?",
            (change.id,),
        ).fetchone()
        cursor = db.execute(
            "INSERT INTO reverts(round, corrector, from_class, to_class, changes, skipped, "
            "created_at) VALUES (?, ?, ?, ?, 1, 0, ?)",
            (change.round, change.corrector, change.before, change.after, utc_now()),
        )
        revert_id = int(cursor.lastrowid or 0)
        db.execute(
            "UPDATE segments SET label = ?, assigned = ?, origin = ?, origin_round = ? "
            "WHERE image_id = ? AND segment_id = ?",
            (change.before, assigned, origin, origin_round, change.image_id, change.segment_id),
        )
        db.execute("UPDATE corrections SET reverted_by = ? WHERE id = ?", (revert_id, change.id))
        db.execute(
            "INSERT OR IGNORE INTO rejected_changes(image_id, segment_id, after, revert) "
            "VALUES (?, ?, ?, ?)",
            (change.image_id, change.segment_id, change.after, revert_id),
        )
        return revert_id

    def undo(self, annotator: str) -> AutoChange | None:
        """Take back the reviewer's last verdict (one transaction); lease that change again."""
        annotator = canonical_name(annotator)
        expires = self._now() + self.lease_seconds
        with self.ws.transaction() as db:
            row = db.execute(
                "SELECT id, change_id, correction_id, revert_id FROM reviews WHERE annotator = ? "
                "ORDER BY id DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            if row is None:
                return None
            review_id, change_id, correction_id, revert_id = (
                int(row[0]),
                int(row[1]),
                int(row[2]),
                row[3],
            )
            change = self._get(db, change_id)
            state = db.execute(
                "SELECT origin, origin_round FROM segments WHERE image_id = ? AND segment_id = ?",
                (change.image_id, change.segment_id),
            ).fetchone()
            last = db.execute(
                "SELECT MAX(id) FROM corrections WHERE image_id = ? AND segment_id = ?",
                (change.image_id, change.segment_id),
            ).fetchone()[0]
            if int(last) != correction_id or state[0] != "manual":
                raise LeaseError(
                    f"{change.image_id}/{change.segment_id} changed since this verdict; it "
                    "cannot be taken back"
                )
            before, assigned, origin, origin_round = db.execute(
                "SELECT before, prev_assigned, prev_origin, prev_origin_round FROM corrections "
                "WHERE id = ?",
                (correction_id,),
            ).fetchone()
            db.execute("DELETE FROM reviews WHERE id = ?", (review_id,))
            db.execute("DELETE FROM corrections WHERE id = ?", (correction_id,))
            if revert_id is not None:  # back to the state the change left
                before, assigned, origin, origin_round = (
                    change.after,
                    change.after,
                    "auto",
                    change.round,
                )
                db.execute("UPDATE corrections SET reverted_by = NULL WHERE id = ?", (change_id,))
                db.execute("DELETE FROM rejected_changes WHERE revert = ?", (int(revert_id),))
                db.execute("DELETE FROM reverts WHERE id = ?", (int(revert_id),))
            db.execute(
                "UPDATE segments SET label = ?, assigned = ?, origin = ?, origin_round = ? "
                "WHERE image_id = ? AND segment_id = ?",
                (before, assigned, origin, origin_round, change.image_id, change.segment_id),
            )
            db.execute("DELETE FROM review_leases WHERE annotator = ?", (annotator,))
            db.execute(
                "INSERT OR REPLACE INTO review_leases(change_id, annotator, expires_at) "
                "VALUES (?, ?, ?)",
                (change_id, annotator, expires),
            )
            return self._get(db, change_id)

    def release(self, annotator: str) -> int:
        """Give the reviewer's lease back; returns how many."""
        annotator = canonical_name(annotator)
        with self.ws.transaction() as db:
            cursor = db.execute("DELETE FROM review_leases WHERE annotator = ?", (annotator,))
            return int(cursor.rowcount)

    def progress(self) -> ReviewProgress:
        db = self.ws.connection
        by_annotator = {
            str(name): int(n)
            for name, n in db.execute(
                "SELECT annotator, COUNT(*) FROM reviews GROUP BY annotator ORDER BY annotator"
            )
        }
        leased = db.execute(
            "SELECT COUNT(*) FROM review_leases WHERE expires_at > ?", (self._now(),)
        ).fetchone()[0]
        return ReviewProgress(
            reviewed=sum(by_annotator.values()),
            left=len(self._reviewable(db)),
            leased=int(leased),
            by_annotator=by_annotator,
        )

    def verdicts(self) -> dict[int, str]:
        """Change id → ``accept`` or ``revert``, for every reviewed change."""
        return {
            int(i): str(v)
            for i, v in self.ws.connection.execute("SELECT change_id, verdict FROM reviews")
        }

    def evidence(self) -> list[ReviewEvidence]:
        """What the reviews say about each round's corrector (a uniform sample of its
        changes in force when they were reviewed)."""
        rows = self.ws.connection.execute(
            "SELECT c.round, c.corrector, COUNT(*), SUM(r.verdict = 'accept') FROM reviews r "
            "JOIN corrections c ON c.id = r.change_id GROUP BY c.round, c.corrector "
            "ORDER BY c.round, c.corrector"
        )
        return [ReviewEvidence(int(r), str(c or "lcm"), int(n), int(k)) for r, c, n, k in rows]
