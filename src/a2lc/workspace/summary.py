"""What a workspace reports: per-round metrics and the status summary.

A mixin of :class:`~a2lc.workspace.Workspace`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a2lc.data.sample import Dataset, Sample
from a2lc.workspace.schema import schema_version
from a2lc.workspace.writes import write_metrics as _write_metrics

if TYPE_CHECKING:
    from a2lc.workspace.types import RoundInfo


class SummaryMixin:
    """Metrics and :meth:`status` (see the module doc)."""

    if TYPE_CHECKING:
        path: Path
        _db: sqlite3.Connection

        def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def meta(self, key: str, default: str | None = None) -> str | None: ...
        def rounds(self) -> list[RoundInfo]: ...
        def segment_table(self, image_id: str) -> Any: ...
        @property
        def dataset(self) -> Dataset: ...
        @property
        def samples(self) -> tuple[Sample, ...]: ...
        @property
        def has_segments(self) -> bool: ...
        @property
        def has_ground_truth(self) -> bool: ...
        @property
        def hand_labelled_ids(self) -> list[str]: ...

    # ------------------------------------------------------------------ metrics

    def record_metrics(self, round_index: int, values: dict[str, float]) -> None:
        """Store measurements of a round; undefined ones (NaN, e.g. IoU of an absent class) are left out."""
        with self.transaction() as db:
            _write_metrics(db, round_index, values)

    def metrics(self) -> dict[int, dict[str, float]]:
        result: dict[int, dict[str, float]] = {}
        for r, name, value in self._db.execute(
            "SELECT round, name, value FROM metrics ORDER BY round, name"
        ):
            result.setdefault(int(r), {})[str(name)] = float(value)
        return result

    # ------------------------------------------------------------------ summary

    def status(self) -> dict[str, Any]:
        """A JSON-friendly summary of the workspace."""
        db = self._db
        origins = dict(
            db.execute(
                "SELECT CASE WHEN given = 1 THEN 'given' ELSE origin END, COUNT(*) FROM segments "
                "GROUP BY 1"
            ).fetchall()
        )
        rounds = []
        for info in self.rounds():
            queried = db.execute(
                "SELECT COUNT(*) FROM queries WHERE round = ?", (info.round,)
            ).fetchone()[0]
            manual, relabelled = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(before != after), 0) FROM corrections WHERE round = ? AND source = 'manual'",
                (info.round,),
            ).fetchone()
            auto = db.execute(
                "SELECT COUNT(*) FROM corrections WHERE round = ? AND source = 'auto'",
                (info.round,),
            ).fetchone()[0]
            rounds.append(
                {
                    "round": info.round,
                    "status": info.status,
                    "strategy": info.strategy,
                    "budget": info.budget,
                    "queried": int(queried),
                    "answered": int(manual),
                    "label_changed": int(relabelled),
                    "auto_corrections": int(auto),
                }
            )
        return {
            "workspace": str(self.path),
            "schema_version": schema_version(db),
            "dataset": {
                "format": self.meta("dataset_format"),
                "root": self.meta("dataset_root"),
                "split": self.meta("split"),
                "images": len(self.samples),
                "classes": [c.name for c in self.dataset.classes],
                "ground_truth": self.has_ground_truth,
                "ground_truth_images": self.dataset.ground_truth_count,
            },
            "initial_labels": self.meta("initial_source") if self.has_segments else None,
            "segments": {
                "total": sum(origins.values()),
                "initial": int(origins.get("initial", 0)),
                "manual": int(origins.get("manual", 0)),
                "auto": int(origins.get("auto", 0)),
                "given": int(origins.get("given", 0)),
            },
            "hand_labelled_images": len(self.hand_labelled_ids),
            "rounds": rounds,
            "metrics": self.metrics(),
        }
