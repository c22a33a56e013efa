"""Automatic changes of a workspace: their evidence, listing them, and taking them back.

A mixin of :class:`~a2lc.workspace.Workspace`. Every automatic change is a row of
``corrections`` with ``source = 'auto'``: the round, the corrector, its confidence,
the evidence behind the guarantee in force (JSON), and the state of the segment it
replaced (``prev_assigned``, ``prev_origin``, ``prev_origin_round``; ``before`` is
the label). :meth:`ChangesMixin.revert_automatic_changes` puts that state back in one
transaction (so a kill leaves either everything or nothing reverted), records the
revert, and remembers each reverted ``(segment, class)`` so no corrector proposes it
again. A segment a person answered since, or that a later change touched, is left
as it is and reported.

Reverting a round before the last one that made automatic changes is refused: the
later rounds' models were trained on labels that included the earlier changes, so
their own changes cannot be said not to depend on them; revert the rounds newest
first instead (the error says which).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a2lc.errors import WorkspaceError
from a2lc.workspace.writes import utc_now as _now

CORRECTOR_STEPS = ("lcm", "checked", "proven")
"""Names of the correctors that change labels (the step each records)."""


@dataclass(frozen=True)
class AutoChange:
    """One automatic change: ``id`` (the correction row), ``round``, the segment, the
    label ``before`` and ``after``, the ``corrector``, its ``confidence`` (None when it
    gives none), ``evidence`` (the guarantee and what backed it when it was applied) and
    ``reverted_by`` (the revert that took it back, or None)."""

    id: int
    round: int
    image_id: str
    segment_id: int
    before: int
    after: int
    corrector: str
    confidence: float | None
    evidence: dict[str, Any] = field(compare=False)
    reverted_by: int | None = None


@dataclass(frozen=True)
class Revert:
    """What a revert did (or, with ``dry_run``, would do): ``reverted`` changes, and
    ``skipped`` ones with the reason (a person answered the segment since, …); ``id``
    of the recorded revert (None for a dry run or when nothing matched)."""

    round: int
    reverted: list[AutoChange]
    skipped: list[tuple[AutoChange, str]]
    id: int | None


_COLUMNS = (
    "id, round, image_id, segment_id, before, after, corrector, confidence, evidence, reverted_by"
)


def _change(row: Sequence[Any]) -> AutoChange:
    evidence = json.loads(row[8]) if row[8] else {}
    return AutoChange(
        int(row[0]),
        int(row[1]),
        str(row[2]),
        int(row[3]),
        int(row[4]),
        int(row[5]),
        str(row[6] or "lcm"),
        None if row[7] is None else float(row[7]),
        evidence,
        None if row[9] is None else int(row[9]),
    )


class ChangesMixin:
    """Automatic changes: list, revert (see the module doc)."""

    if TYPE_CHECKING:
        path: Path
        _db: sqlite3.Connection

        def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        @property
        def num_classes(self) -> int: ...

    def automatic_changes(
        self,
        *,
        round_index: int | None = None,
        corrector: str | None = None,
        from_class: int | None = None,
        to_class: int | None = None,
        include_reverted: bool = False,
    ) -> list[AutoChange]:
        """Automatic changes in the order they were made, filtered by round, corrector and
        (from → to) class; reverted ones only with ``include_reverted``."""
        sql = f"SELECT {_COLUMNS} FROM corrections WHERE source = 'auto'"
        params: list[Any] = []
        for column, value in (
            ("round", round_index),
            ("corrector", corrector),
            ("before", from_class),
            ("after", to_class),
        ):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if not include_reverted:
            sql += " AND reverted_by IS NULL"
        return [_change(row) for row in self._db.execute(sql + " ORDER BY id", params)]

    def rejected_changes(self) -> set[tuple[str, int, int]]:
        """``(image id, segment id, class)`` that a revert took back: never proposed again."""
        return {
            (str(i), int(s), int(a))
            for i, s, a in self._db.execute(
                "SELECT image_id, segment_id, after FROM rejected_changes"
            )
        }

    def reverts(self) -> list[dict[str, Any]]:
        """Every recorded revert, oldest first."""
        keys = ("id", "round", "corrector", "from_class", "to_class", "changes", "skipped")
        rows = self._db.execute(
            "SELECT id, round, corrector, from_class, to_class, changes, skipped, created_at "
            "FROM reverts ORDER BY id"
        )
        return [{**dict(zip(keys, row[:7], strict=True)), "created_at": row[7]} for row in rows]

    def revert_automatic_changes(
        self,
        round_index: int,
        *,
        corrector: str | None = None,
        from_class: int | None = None,
        to_class: int | None = None,
        dry_run: bool = False,
    ) -> Revert:
        """Put back the labels the selected automatic changes of ``round_index`` replaced.

        ``corrector``: only that corrector's changes; ``from_class``, ``to_class``: only
        changes from / to that class. One transaction; ``dry_run`` changes nothing.
        Raises :class:`WorkspaceError` for an unknown corrector or class, or when a later
        round made automatic changes that are not reverted (revert those first).
        """
        if corrector is not None and corrector not in CORRECTOR_STEPS:
            raise WorkspaceError(
                f"corrector {corrector!r}: automatic changes come from {', '.join(CORRECTOR_STEPS)}"
            )
        for name, value in (("from class", from_class), ("to class", to_class)):
            if value is not None and not 0 <= value < self.num_classes:
                raise WorkspaceError(f"{name} {value}: classes are 0..{self.num_classes - 1}")
        rounds = [int(r) for (r,) in self._db.execute("SELECT round FROM rounds")]
        if round_index not in rounds:
            raise WorkspaceError(f"workspace {self.path} has no round {round_index}")
        with self.transaction() as db:
            later = [
                int(r)
                for (r,) in db.execute(
                    "SELECT DISTINCT round FROM corrections WHERE source = 'auto' AND round > ? "
                    "AND reverted_by IS NULL ORDER BY round",
                    (round_index,),
                )
            ]
            if later:
                raise WorkspaceError(
                    f"round {round_index}: later rounds ({', '.join(map(str, later))}) made "
                    "automatic changes with models trained on this round's labels, so they may "
                    "depend on the changes you want to take back; revert them first, newest "
                    f"first (a2lc revert -w {self.path} --round {later[-1]}), then round "
                    f"{round_index}"
                )
            selected = self.automatic_changes(
                round_index=round_index,
                corrector=corrector,
                from_class=from_class,
                to_class=to_class,
            )
            reverted: list[AutoChange] = []
            previous: dict[int, tuple[Any, str, int]] = {}
            skipped: list[tuple[AutoChange, str]] = []
            for change in reversed(selected):  # newest first
                row = db.execute(
                    "SELECT s.label, s.assigned, s.origin, s.origin_round, c.prev_assigned, "
                    "c.prev_origin, c.prev_origin_round FROM segments s, corrections c "
                    "WHERE s.image_id = ? AND s.segment_id = ? AND c.id = ?",
                    (change.image_id, change.segment_id, change.id),
                ).fetchone()
                state = (int(row[0]), row[1], str(row[2]), int(row[3]))
                if state[2] == "manual":
                    skipped.append((change, "a person answered this segment since"))
                elif state != (change.after, change.after, "auto", change.round):
                    skipped.append((change, "a later change touched this segment"))
                else:
                    reverted.append(change)
                    previous[change.id] = (row[4], str(row[5]), int(row[6]))
            reverted.reverse()
            if dry_run or not reverted:
                return Revert(round_index, reverted, skipped, None)
            cursor = db.execute(
                "INSERT INTO reverts(round, corrector, from_class, to_class, changes, skipped, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    round_index,
                    corrector,
                    from_class,
                    to_class,
                    len(reverted),
                    len(skipped),
                    _now(),
                ),
            )
            revert_id = int(cursor.lastrowid or 0)
            for change in reverted:
                assigned, origin, origin_round = previous[change.id]
                db.execute(
                    "UPDATE segments SET label = ?, assigned = ?, origin = ?, origin_round = ? "
                    "WHERE image_id = ? AND segment_id = ?",
                    (
                        change.before,
                        assigned,
                        origin,
                        origin_round,
                        change.image_id,
                        change.segment_id,
                    ),
                )
                db.execute(
                    "UPDATE corrections SET reverted_by = ? WHERE id = ?", (revert_id, change.id)
                )
                db.execute(
                    "INSERT OR IGNORE INTO rejected_changes(image_id, segment_id, after, revert) "
                    "VALUES (?, ?, ?, ?)",
                    (change.image_id, change.segment_id, change.after, revert_id),
                )
        return Revert(round_index, reverted, skipped, revert_id)
