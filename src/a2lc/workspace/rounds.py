"""Rounds of a workspace: queries, answers, corrections and resumable steps.

A mixin of :class:`~a2lc.workspace.Workspace` (which provides the connection,
the dataset and the maps it uses); kept apart so each file says one thing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from a2lc.data.maps import write_label_map
from a2lc.data.sample import IGNORE_INDEX, Sample
from a2lc.errors import WorkspaceError
from a2lc.workspace.paths import round_dir
from a2lc.workspace.types import Answer, Query, RoundInfo, SegmentTable
from a2lc.workspace.writes import utc_now as _now
from a2lc.workspace.writes import write_metrics as _write_metrics


class RoundsMixin:
    """Round, query, answer, correction and step records (see the module doc)."""

    if TYPE_CHECKING:
        path: Path
        _db: sqlite3.Connection

        def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def require_segments(self) -> None: ...
        def manual_segments(self, *, before_round: int | None = None) -> dict[str, np.ndarray]: ...
        def segment_table(self, image_id: str) -> SegmentTable: ...
        def read_segments(self, image_id: str) -> np.ndarray: ...
        def read_labels(
            self, image_id: str, *, segments: np.ndarray | None = None
        ) -> np.ndarray: ...
        @property
        def num_classes(self) -> int: ...
        @property
        def samples(self) -> tuple[Sample, ...]: ...
        @property
        def palette(self) -> list[tuple[int, int, int]]: ...

    # ------------------------------------------------------------------ rounds

    def rounds(self) -> list[RoundInfo]:
        return [
            RoundInfo(int(r), s, st, int(b), json.loads(c), sa, fa)
            for r, s, st, b, c, sa, fa in self._db.execute(
                "SELECT round, status, strategy, budget, config, started_at, finished_at FROM rounds ORDER BY round"
            )
        ]

    def open_round(self) -> RoundInfo | None:
        """The round waiting for answers or closing, if any."""
        rounds = [r for r in self.rounds() if r.status != "closed"]
        return rounds[0] if rounds else None

    def require_no_open_round(self) -> None:
        """Raise if a round is waiting for answers: a new round starts only after it closes."""
        current = self.open_round()
        if current is not None:
            raise WorkspaceError(
                f"round {current.round} is still open ({self.count_unanswered(current.round)} "
                "queries unanswered); answer and close it first (`a2lc correct`)"
            )

    def next_round(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(round), 0) FROM rounds").fetchone()
        return int(row[0]) + 1

    def start_round(
        self,
        queries: Sequence[tuple[str, int, float]],
        *,
        strategy: str,
        budget: int,
        config: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> int:
        """Record a new round and its queries ``(image id, segment id, score)``, best first.

        One transaction, with the ``metrics`` of planning it (so a run killed right after
        never leaves a round without them). Refused while another round is open, or if a
        query names an unknown segment or one corrected manually in an earlier round.
        """
        self.require_segments()
        self.require_no_open_round()
        round_index = self.next_round()
        manual = {(k, int(s)) for k, v in self.manual_segments().items() for s in v}
        keys = [(image_id, int(segment_id)) for image_id, segment_id, _ in queries]
        if len(set(keys)) != len(keys):
            raise WorkspaceError("a segment is queried twice in one round")
        repeated = [k for k in keys if k in manual]
        if repeated:
            raise WorkspaceError(
                f"segments already corrected manually cannot be queried again: {repeated[:5]}"
            )
        with self.transaction() as db:
            db.execute(
                "INSERT INTO rounds(round, status, strategy, budget, config, started_at) VALUES (?, 'querying', ?, ?, ?, ?)",
                (round_index, strategy, budget, json.dumps(config or {}, sort_keys=True), _now()),
            )
            try:
                db.executemany(
                    "INSERT INTO queries(round, image_id, segment_id, score, rank) VALUES (?, ?, ?, ?, ?)",
                    [
                        (round_index, i, int(s), float(sc), rank)
                        for rank, (i, s, sc) in enumerate(queries)
                    ],
                )
            except sqlite3.IntegrityError as exc:
                raise WorkspaceError(f"a query names an unknown segment ({exc})") from None
            self._check_queries_exist(db, round_index)
            # Known from now on, so an open round shows its queries in status and report.
            (queried,) = db.execute(
                "SELECT COUNT(*) FROM queries WHERE round <= ?", (round_index,)
            ).fetchone()
            _write_metrics(db, round_index, {**(metrics or {}), "segments_queried": float(queried)})
        return round_index

    @staticmethod
    def _check_queries_exist(db: sqlite3.Connection, round_index: int) -> None:
        missing = db.execute(
            "SELECT q.image_id, q.segment_id FROM queries q LEFT JOIN segments s "
            "ON s.image_id = q.image_id AND s.segment_id = q.segment_id "
            "WHERE q.round = ? AND s.segment_id IS NULL LIMIT 5",
            (round_index,),
        ).fetchall()
        if missing:
            raise WorkspaceError(f"queries name segments that do not exist: {missing}")

    def queries(self, round_index: int) -> list[Query]:
        return [
            Query(str(i), int(s), float(sc), int(r))
            for i, s, sc, r in self._db.execute(
                "SELECT image_id, segment_id, score, rank FROM queries WHERE round = ? ORDER BY rank",
                (round_index,),
            )
        ]

    def unanswered(self, round_index: int) -> list[Query]:
        return [
            Query(str(i), int(s), float(sc), int(r))
            for i, s, sc, r in self._db.execute(
                "SELECT q.image_id, q.segment_id, q.score, q.rank FROM queries q "
                "WHERE q.round = ? AND NOT EXISTS (SELECT 1 FROM corrections c WHERE c.round = q.round "
                "AND c.image_id = q.image_id AND c.segment_id = q.segment_id AND c.source = 'manual') "
                "ORDER BY q.rank",
                (round_index,),
            )
        ]

    def count_unanswered(self, round_index: int) -> int:
        return len(self.unanswered(round_index))

    def record_answers(self, round_index: int, answers: Sequence[Answer]) -> None:
        """Commit answers to queries of an open round, in one transaction.

        Each answered segment becomes a manual correction (paid and never queried
        again, even when its label did not change). Validation happens first;
        an invalid answer rejects the whole batch and changes nothing.
        """
        self.validate_answers(round_index, answers)
        painted = self.store_paints(round_index, answers)
        with self.transaction() as db:
            self.write_answers(db, round_index, answers, painted=painted)

    def validate_answers(self, round_index: int, answers: Sequence[Answer]) -> None:
        """Raise :class:`WorkspaceError` unless every answer is for a distinct open query."""
        info = self._round(round_index)
        if info.status != "querying":
            raise WorkspaceError(f"round {round_index} is closed; it takes no more answers")
        pending = {(q.image_id, q.segment_id) for q in self.unanswered(round_index)}
        seen: set[tuple[str, int]] = set()
        for answer in answers:
            key = (answer.image_id, int(answer.segment_id))
            if key not in pending or key in seen:
                raise WorkspaceError(
                    f"segment {answer.image_id}/{answer.segment_id} is not an open query of round {round_index}"
                )
            seen.add(key)
            if answer.label is not None and not (
                0 <= answer.label < self.num_classes or answer.label == IGNORE_INDEX
            ):
                raise WorkspaceError(
                    f"answer for {answer.image_id}/{answer.segment_id}: class {answer.label} is not "
                    f"0..{self.num_classes - 1} or {IGNORE_INDEX} (void)"
                )

    def store_paints(
        self, round_index: int, answers: Sequence[Answer]
    ) -> dict[tuple[str, int], tuple[str, int]]:
        """Check and write the paintings of validated ``answers``, before they are recorded.

        Returns, per painted answer, the painting's file (relative) and the class most
        of the segment's pixels have once it is applied. Raises before writing anything
        if a painting is invalid.
        """
        from a2lc.workspace.paint import apply_paint, check_paint, majority, store_paint

        checked: list[tuple[Answer, np.ndarray, int]] = []
        for answer in answers:
            if answer.paint is None:
                continue
            name = f"answer for {answer.image_id}/{answer.segment_id}"
            segments = self.read_segments(answer.image_id)
            segment = segments == int(answer.segment_id)
            paint = check_paint(
                answer.paint, segment=segment, num_classes=self.num_classes, name=name
            )
            labels = self.read_labels(answer.image_id, segments=segments)
            if answer.label is not None:
                labels = np.where(segment, np.uint8(answer.label), labels).astype(labels.dtype)
            checked.append((answer, paint, majority(apply_paint(labels, segment, paint), segment)))
        return {
            (a.image_id, int(a.segment_id)): (
                store_paint(self.path, round_index, a.image_id, int(a.segment_id), paint),
                after,
            )
            for a, paint, after in checked
        }

    @staticmethod
    def write_answers(
        db: sqlite3.Connection,
        round_index: int,
        answers: Sequence[Answer],
        *,
        painted: dict[tuple[str, int], tuple[str, int]] | None = None,
    ) -> None:
        """Insert validated answers inside the caller's transaction.

        The segment's state before the answer is kept in the correction row, so
        an answer can be undone while its round is open. ``painted``: what
        :meth:`store_paints` returned for these answers.
        """
        now = _now()
        painted = painted or {}
        for answer in answers:
            before, assigned, origin, origin_round, prev_paint = db.execute(
                "SELECT label, assigned, origin, origin_round, paint FROM segments "
                "WHERE image_id = ? AND segment_id = ?",
                (answer.image_id, answer.segment_id),
            ).fetchone()
            paint, painted_label = painted.get(
                (answer.image_id, int(answer.segment_id)), (None, None)
            )
            if answer.paint is not None and paint is None:
                raise WorkspaceError(
                    f"answer for {answer.image_id}/{answer.segment_id}: its painting was not stored"
                )
            relabel = answer.label is not None or paint is not None
            after = int(answer.label) if answer.label is not None else int(before)
            label = painted_label if painted_label is not None else after
            db.execute(
                "INSERT INTO corrections(round, image_id, segment_id, before, after, relabel, source, "
                "annotator, created_at, prev_assigned, prev_origin, prev_origin_round, paint, prev_paint) "
                "VALUES (?, ?, ?, ?, ?, ?, 'manual', ?, ?, ?, ?, ?, ?, ?)",
                (
                    round_index,
                    answer.image_id,
                    answer.segment_id,
                    int(before),
                    label,
                    int(relabel),
                    answer.annotator,
                    now,
                    assigned,
                    origin,
                    origin_round,
                    paint,
                    prev_paint,
                ),
            )
            db.execute(
                "UPDATE segments SET label = ?, assigned = CASE WHEN ? THEN ? ELSE assigned END, "
                "origin = 'manual', origin_round = ?, paint = ? WHERE image_id = ? AND segment_id = ?",
                (
                    label,
                    int(answer.label is not None),
                    after,
                    round_index,
                    paint,
                    answer.image_id,
                    answer.segment_id,
                ),
            )

    def close_round(self, round_index: int, *, show_progress: bool = False) -> None:
        """Write the round's label snapshots and mark it closed. Idempotent; needs every answer."""
        info = self._round(round_index)
        if info.status == "closed":
            return
        left = self.count_unanswered(round_index)
        if left:
            raise WorkspaceError(f"round {round_index} still has {left} unanswered queries")
        files = self.write_label_versions(round_index, show_progress=show_progress)
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO label_versions(image_id, round, path) VALUES (?, ?, ?)",
                [(image_id, round_index, rel) for image_id, rel in files],
            )
            db.execute(
                "UPDATE rounds SET status = 'closed', finished_at = ? WHERE round = ?",
                (_now(), round_index),
            )

    def write_label_versions(
        self, round_index: int, *, show_progress: bool = False
    ) -> list[tuple[str, str]]:
        """Write current labels of the images relabelled in ``round_index``; return (id, path)."""
        changed = [
            str(r[0])
            for r in self._db.execute(
                "SELECT DISTINCT image_id FROM corrections WHERE round = ? AND relabel = 1 ORDER BY image_id",
                (round_index,),
            )
        ]
        written: list[tuple[str, str]] = []
        for image_id in changed:
            rel = f"{round_dir(round_index)}/{image_id}.png"
            write_label_map(self.path / rel, self.read_labels(image_id), palette=self.palette)
            written.append((image_id, rel))
        return written

    def _round(self, round_index: int) -> RoundInfo:
        for info in self.rounds():
            if info.round == round_index:
                return info
        raise WorkspaceError(f"workspace {self.path} has no round {round_index}")

    def corrections(self, round_index: int | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT round, image_id, segment_id, before, after, relabel, source, annotator, created_at "
            "FROM corrections"
        )
        params: tuple[Any, ...] = ()
        if round_index is not None:
            sql += " WHERE round = ?"
            params = (round_index,)
        keys = (
            "round",
            "image_id",
            "segment_id",
            "before",
            "after",
            "relabel",
            "source",
            "annotator",
            "created_at",
        )
        return [
            dict(zip(keys, row, strict=True))
            for row in self._db.execute(sql + " ORDER BY id", params)
        ]

    def record_auto_corrections(
        self,
        round_index: int,
        changes: Sequence[tuple[str, int, int]],
        *,
        step: str = "lcm",
        metrics: dict[str, float] | None = None,
        confidence: Sequence[float] | None = None,
        evidence: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Relabel ``(image id, segment id, class)`` automatically and mark ``step`` done, atomically.

        ``step`` names the corrector; ``metrics`` (what it measured) go into the same
        transaction. Each change keeps its ``confidence`` (one per change, or None) and
        ``evidence`` (one JSON object for all, or one per change: the sources that
        proposed it, the guarantee in force and what backed it), and the state of the
        segment it replaced, so it can be reverted. Manually corrected segments, those
        of hand-labelled images and changes a revert took back are never applied: such
        a change is refused.
        """
        now = _now()
        count = len(changes)
        if confidence is not None and len(confidence) != count:
            raise WorkspaceError(f"{len(confidence)} confidences for {count} changes")
        if evidence is None or isinstance(evidence, dict):
            evidences = [json.dumps(evidence or {}, sort_keys=True)] * count
        else:
            if len(evidence) != count:
                raise WorkspaceError(f"{len(evidence)} evidence records for {count} changes")
            evidences = [json.dumps(e, sort_keys=True) for e in evidence]
        with self.transaction() as db:
            if metrics:
                _write_metrics(db, round_index, metrics)
            for k, (image_id, segment_id, after) in enumerate(changes):
                row = db.execute(
                    "SELECT label, origin, given, assigned, origin_round FROM segments "
                    "WHERE image_id = ? AND segment_id = ?",
                    (image_id, int(segment_id)),
                ).fetchone()
                if row is None:
                    raise WorkspaceError(f"no segment {image_id}/{segment_id}")
                before, origin = int(row[0]), str(row[1])
                if db.execute(
                    "SELECT 1 FROM rejected_changes WHERE image_id = ? AND segment_id = ? "
                    "AND after = ?",
                    (image_id, int(segment_id), int(after)),
                ).fetchone():
                    raise WorkspaceError(
                        f"segment {image_id}/{segment_id} → class {after} was reverted; "
                        "it is never applied again"
                    )
                if int(row[2]):
                    raise WorkspaceError(
                        f"segment {image_id}/{segment_id} is in an image a person labelled; "
                        "automatic corrections may not change it"
                    )
                if origin == "manual":
                    raise WorkspaceError(
                        f"segment {image_id}/{segment_id} was corrected manually; automatic corrections may not change it"
                    )
                db.execute(
                    "INSERT INTO corrections(round, image_id, segment_id, before, after, relabel, "
                    "source, annotator, created_at, prev_assigned, prev_origin, "
                    "prev_origin_round, corrector, confidence, evidence) "
                    "VALUES (?, ?, ?, ?, ?, 1, 'auto', NULL, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        round_index,
                        image_id,
                        int(segment_id),
                        before,
                        int(after),
                        now,
                        row[3],
                        origin,
                        int(row[4]),
                        step,
                        None if confidence is None else float(confidence[k]),
                        evidences[k],
                    ),
                )
                db.execute(
                    "UPDATE segments SET label = ?, assigned = ?, origin = 'auto', origin_round = ? "
                    "WHERE image_id = ? AND segment_id = ?",
                    (int(after), int(after), round_index, image_id, int(segment_id)),
                )
            self._mark_step(db, round_index, step, {"changed": len(changes)})

    # ------------------------------------------------------------------ steps

    def step_done(self, round_index: int, name: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM steps WHERE round = ? AND name = ?", (round_index, name)
        ).fetchone()
        return row is not None

    def mark_step(self, round_index: int, name: str, detail: dict[str, Any] | None = None) -> None:
        with self.transaction() as db:
            self._mark_step(db, round_index, name, detail)

    @staticmethod
    def _mark_step(
        db: sqlite3.Connection, round_index: int, name: str, detail: dict[str, Any] | None
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO steps(round, name, finished_at, detail) VALUES (?, ?, ?, ?)",
            (round_index, name, _now(), json.dumps(detail or {}, sort_keys=True)),
        )
