"""The workspace: one folder holding the whole state of a correction project.

Layout::

    W/a2lc.sqlite                 the single source of truth (SQLite, WAL mode)
    W/segments/<image id>.png     segment maps (8- or 16-bit PNG)
    W/labels/round_000/<id>.png   initial labels
    W/labels/round_NNN/<id>.png   labels after round NNN, for images it changed

Images and ground truth are referenced by path, never copied. A segment is
identified by ``(image id, segment id)`` everywhere. The current label map of
an image is derived from its initial labels and the ``assigned`` class of its
segments, so the label PNGs of later rounds are snapshots that
:meth:`Workspace.write_label_versions` can always rebuild.

Writes are atomic: files via temp file + rename, database changes as one
transaction per logical step (recording a round's queries, one batch of
answers, closing a round), so a killed process leaves a workspace that opens
and resumes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from a2lc._version import __version__
from a2lc.data.map_cache import MapCache
from a2lc.data.maps import read_label_map, read_segment_map, write_label_map, write_segment_map
from a2lc.data.readers import FORMATS, validate_dataset
from a2lc.data.sample import IGNORE_INDEX, ClassInfo, Dataset, Sample, identity_lut
from a2lc.data.segments import label_histograms, paint_segments, segment_sizes
from a2lc.errors import DataError, Problem, WorkspaceError
from a2lc.runtime import map_memory_budget
from a2lc.workspace.changes import ChangesMixin
from a2lc.workspace.initial_maps import load_initial_maps
from a2lc.workspace.lock import acquire as acquire_lock
from a2lc.workspace.lock import release as release_lock
from a2lc.workspace.paths import DB_NAME, SEGMENTS_DIR, round_dir
from a2lc.workspace.pool import PoolMixin
from a2lc.workspace.rounds import RoundsMixin
from a2lc.workspace.schema import SCHEMA_VERSION, migrate, schema_version
from a2lc.workspace.summary import SummaryMixin
from a2lc.workspace.swap import COMMIT_KEY as SWAP_COMMIT_KEY
from a2lc.workspace.swap import FileSwap
from a2lc.workspace.swap import recover as recover_swaps
from a2lc.workspace.types import (
    Answer,
    PoolSegments,
    Query,
    RoundInfo,
    SegmentTable,
)
from a2lc.workspace.writes import utc_now as _now

log = logging.getLogger(__name__)

CLASS_ISTHING_META = "class_isthing"
"""Meta key: JSON list of each class's ``isthing`` (true, false or null = by name)."""

Origin = Literal["initial", "manual", "auto"]
Source = Literal["manual", "auto"]


class Workspace(RoundsMixin, ChangesMixin, PoolMixin, SummaryMixin):
    """Open with :meth:`Workspace.open`, create with :meth:`Workspace.create`.

    Lifecycle, dataset and maps are here; rounds, queries, answers and steps in
    :class:`~a2lc.workspace.rounds.RoundsMixin`; segment tables and which images
    ground truth measures in :class:`~a2lc.workspace.pool.PoolMixin`; metrics and the
    status summary in :class:`~a2lc.workspace.summary.SummaryMixin`.
    """

    def __init__(
        self, path: Path, connection: sqlite3.Connection, *, lock: Path | None = None
    ) -> None:
        self.path = path
        self._db = connection
        self._dataset: Dataset | None = None
        self._lock = lock
        self.read_only = lock is None
        self.maps = MapCache(budget=map_memory_budget())
        """Decoded segment, initial-label and ground-truth maps (files that do not change
        during a run), so that each is decoded once per process."""

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, path: Path | str, *, read_only: bool = False) -> Workspace:
        """Open an existing workspace.

        For writing (the default) it takes the workspace's writer lock (one writing
        process at a time; see :mod:`a2lc.workspace.lock`), applies pending schema
        migrations and rolls back or completes a file swap a killed process left.
        ``read_only`` takes no lock, so it works while a run holds it and on a
        workspace the user may not write (status, export, report).
        """
        path = Path(path).expanduser().resolve()
        db_path = path / DB_NAME
        if not db_path.is_file():
            raise WorkspaceError(
                f"{path} is not an a2lc workspace (no {DB_NAME}); create one with `a2lc init`"
            )
        if db_path.stat().st_size == 0:
            raise _not_a_workspace_database(db_path)
        if read_only:
            return cls._open_read_only(path, db_path)
        lock = acquire_lock(path)
        try:
            connection = _connect(db_path)
        except sqlite3.DatabaseError as exc:
            release_lock(lock)
            raise WorkspaceError(
                f"{db_path} cannot be opened as an a2lc workspace: {exc}"
            ) from None
        except BaseException:
            release_lock(lock)
            raise
        try:
            if schema_version(connection) == 0:
                # A fresh database is only ever made by `create`; an empty one here was
                # damaged or replaced, and must not be silently re-initialised.
                raise _not_a_workspace_database(db_path)
            migrate(connection)
        except sqlite3.DatabaseError as exc:
            connection.close()
            release_lock(lock)
            raise WorkspaceError(f"{db_path} is not a readable a2lc database: {exc}") from None
        except BaseException:
            connection.close()
            release_lock(lock)
            raise
        workspace = cls(path, connection, lock=lock)
        try:
            recover_swaps(path, lambda token: workspace.meta(SWAP_COMMIT_KEY) == token)
        except BaseException:
            workspace.close()
            raise
        return workspace

    @classmethod
    def _open_read_only(cls, path: Path, db_path: Path) -> Workspace:
        if (path / "staging").is_dir() and any((path / "staging").glob("swap-*")):
            raise WorkspaceError(
                f"{path} has an interrupted import to roll back; run a command that writes "
                "(e.g. `a2lc run` or `a2lc import-labels`) once, then read it"
            )
        # A folder the user may not write gets no -shm file, so read it as immutable.
        writable = os.access(path, os.W_OK)
        uri = f"file:{db_path}?mode=ro" + ("" if writable else "&immutable=1")
        try:
            connection = sqlite3.connect(
                uri, uri=True, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            connection.execute("PRAGMA busy_timeout = 30000")
            version = schema_version(connection)
            connection.execute("SELECT COUNT(*) FROM meta").fetchone()
        except sqlite3.DatabaseError as exc:
            raise WorkspaceError(f"{db_path} is not a readable a2lc database: {exc}") from None
        if version == 0:
            connection.close()
            raise _not_a_workspace_database(db_path)
        if version != SCHEMA_VERSION:
            connection.close()
            raise WorkspaceError(
                f"{db_path} has schema v{version}, this a2lc reads v{SCHEMA_VERSION}: open it "
                "once for writing (any `a2lc run`) to migrate it"
            )
        return cls(path, connection)

    @classmethod
    def create(
        cls,
        path: Path | str,
        dataset: Dataset,
        *,
        segments_dir: Path | str | None = None,
        labels_dir: Path | str | None = None,
        source: str = "user",
        check_ground_truth: bool = True,
        show_progress: bool = True,
    ) -> Workspace:
        """Create a workspace for ``dataset``, optionally with initial segment and label maps.

        ``segments_dir`` / ``labels_dir`` hold ``<image id>.png`` per sample; labels
        alone give segments of one label each (regions, cut where large), segments
        need labels. Everything is validated before anything is written
        and the workspace is assembled in a temporary folder that is renamed into
        place at the end, so a failure leaves no half-made workspace and an
        existing one is never touched.
        """
        path = Path(path).expanduser().resolve()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise WorkspaceError(f"{path} already exists and is not empty; choose a new folder")
        if segments_dir is not None and labels_dir is None:
            raise WorkspaceError(
                "--segments needs --labels (the initial labels of those segments); --labels "
                "alone derives segments from the labels (regions of one label)"
            )
        # One pass: the layout's problems, the ground truth's and the initial maps' are
        # reported together, so a user fixes everything after one run.
        problems = list(dataset.problems)
        if check_ground_truth:
            validate_dataset(dataset, show_progress=show_progress, problems=problems)
        initial = None
        if labels_dir is not None:
            initial = load_initial_maps(
                dataset,
                Path(segments_dir) if segments_dir is not None else None,
                Path(labels_dir),
                problems=problems,
                show_progress=show_progress,
            )
        DataError.collect(problems, summary=f"{len(problems)} problem(s) in the input")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            connection = _connect(staging / DB_NAME)
            try:
                migrate(connection)
                workspace = cls(staging, connection)
                workspace._write_dataset(dataset)
                if initial is not None:
                    workspace.set_initial_maps(initial, source=source)
            finally:
                connection.close()
            if path.exists():
                path.rmdir()
            staging.rename(path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls.open(path)

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            release_lock(self._lock)
            self._lock = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The database connection, for read-only queries by the workspace's own modules."""
        return self._db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One database transaction: committed on success, rolled back on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ dataset

    def _write_dataset(self, dataset: Dataset) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [
                    ("dataset_format", dataset.format),
                    ("dataset_root", str(dataset.root)),
                    ("split", dataset.split),
                    ("num_classes", str(dataset.num_classes)),
                    ("ignore_index", str(IGNORE_INDEX)),
                    ("created_at", _now()),
                    ("created_by", f"a2lc {__version__}"),
                ],
            )
            db.executemany(
                "INSERT INTO classes(id, name, color) VALUES (?, ?, ?)",
                [(c.id, c.name, json.dumps(list(c.color))) for c in dataset.classes],
            )
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                (CLASS_ISTHING_META, json.dumps([c.isthing for c in dataset.classes])),
            )
            db.executemany(
                "INSERT INTO samples(idx, id, image_path, gt_path, width, height) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        i,
                        s.id,
                        str(s.image_path),
                        None if s.gt_path is None else str(s.gt_path),
                        s.width,
                        s.height,
                    )
                    for i, s in enumerate(dataset.samples)
                ],
            )

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, values: dict[str, str]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(values.items())
            )

    @property
    def dataset(self) -> Dataset:
        """The dataset as recorded at creation (paths as stored; nothing is re-read)."""
        if self._dataset is None:
            rows = self._db.execute("SELECT id, name, color FROM classes ORDER BY id").fetchall()
            things = _class_isthing(self.meta(CLASS_ISTHING_META), len(rows))
            classes = tuple(
                ClassInfo(int(i), str(n), _rgb(json.loads(c)), isthing=t)
                for (i, n, c), t in zip(rows, things, strict=True)
            )
            samples = tuple(
                Sample(str(i), Path(p), None if g is None else Path(g), int(w), int(h))
                for i, p, g, w, h in self._db.execute(
                    "SELECT id, image_path, gt_path, width, height FROM samples ORDER BY idx"
                )
            )
            fmt = self.meta("dataset_format") or "folder"
            lut = (
                FORMATS.get(fmt).ground_truth_lut(len(classes))
                if fmt in FORMATS
                else identity_lut(len(classes))
            )
            self._dataset = Dataset(
                fmt,
                Path(self.meta("dataset_root") or "."),
                self.meta("split") or "",
                classes,
                samples,
                lut,
            )
        return self._dataset

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.dataset.class_names

    @property
    def samples(self) -> tuple[Sample, ...]:
        return self.dataset.samples

    def sample(self, image_id: str) -> Sample:
        try:
            return self.dataset.sample(image_id)
        except KeyError:
            raise WorkspaceError(f"no image {image_id!r} in workspace {self.path}") from None

    # ------------------------------------------------------------------ maps

    @property
    def has_segments(self) -> bool:
        row = self._db.execute("SELECT EXISTS(SELECT 1 FROM label_versions WHERE round = 0)")
        return bool(row.fetchone()[0])

    def require_segments(self) -> None:
        if not self.has_segments:
            raise WorkspaceError(
                f"workspace {self.path} has no segments or initial labels yet: make them with "
                f"`a2lc pseudo-label -w {self.path}` (superpixels labelled by a seed model, or "
                "Grounded SAM), or bring your own with `a2lc init --segments DIR --labels DIR`"
            )

    def set_initial_maps(
        self,
        maps: Iterable[tuple[str, np.ndarray, np.ndarray]],
        *,
        source: str,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        """Store validated ``(image id, segments H×W, labels H×W)`` as the initial state.

        Images a person labelled (:attr:`hand_labelled_ids`) keep their ground truth
        as their labels, pixel for pixel, whatever ``labels`` says; their segments
        are marked *given*: never queried, never changed automatically. Refused once
        a round has started: the initial labels are what every round builds on.
        """
        if self._db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]:
            raise WorkspaceError("initial labels cannot change after the first round started")
        swap = FileSwap(self.path)
        try:
            rows: list[tuple[str, int, int, int, int, int]] = []
            files: list[tuple[str, str]] = []
            relatives: list[str] = []
            hand_labelled = set(self.hand_labelled_ids)
            for image_id, segments, labels in maps:
                sample = self.sample(image_id)
                given = image_id in hand_labelled
                if given and segments.shape == sample.shape:
                    labels = self.read_ground_truth(image_id)
                if segments.shape != sample.shape or labels.shape != sample.shape:
                    raise DataError(
                        Problem(
                            image_id,
                            f"maps {segments.shape}/{labels.shape} do not match image {sample.shape}",
                        )
                    )
                seg_path = f"{SEGMENTS_DIR}/{image_id}.png"
                lab_path = f"{round_dir(0)}/{image_id}.png"
                try:
                    write_segment_map(swap.staged(seg_path), segments)
                    write_label_map(swap.staged(lab_path), labels, palette=self.palette)
                except ValueError as exc:  # ids beyond 16 bits, wrong dtypes
                    raise DataError(Problem(image_id, str(exc))) from None
                relatives += [seg_path, lab_path]
                ids, sizes = segment_sizes(segments)
                majority = label_histograms(labels, segments, ids).argmax(axis=1)
                rows.extend(
                    (image_id, int(i), int(n), int(m), int(m), int(given))
                    for i, n, m in zip(ids, sizes, majority, strict=True)
                )
                files.append((image_id, lab_path))
            swap.swap(relatives)
            with self.transaction() as db:
                db.execute("DELETE FROM segments")
                db.execute("DELETE FROM label_versions")
                db.executemany(
                    "INSERT INTO segments(image_id, segment_id, pixel_count, initial_label, label, given) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                db.executemany(
                    "INSERT INTO label_versions(image_id, round, path) VALUES (?, 0, ?)", files
                )
                for key, value in (
                    ("initial_source", source),
                    ("initial_parameters", json.dumps(parameters or {}, sort_keys=True)),
                    (SWAP_COMMIT_KEY, swap.token),
                ):
                    db.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value)
                    )
        except BaseException:
            if self.meta(SWAP_COMMIT_KEY) != swap.token:
                swap.rollback()
            raise
        swap.finish()

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        return [c.color for c in self.dataset.classes]

    def read_segments(self, image_id: str) -> np.ndarray:
        """``H×W`` int32 segment map of an image."""
        self.require_segments()
        shape = self.sample(image_id).shape
        return self.maps.get(
            self.path / SEGMENTS_DIR / f"{image_id}.png",
            lambda path: read_segment_map(path, shape=shape),
            kind="segments",
        )

    def read_initial_labels(self, image_id: str) -> np.ndarray:
        self.require_segments()
        shape = self.sample(image_id).shape
        lut = identity_lut(self.num_classes)
        return self.maps.get(
            self.path / round_dir(0) / f"{image_id}.png",
            lambda path: read_label_map(path, lut=lut, shape=shape),
            kind="labels",
        )

    def read_labels(self, image_id: str, *, segments: np.ndarray | None = None) -> np.ndarray:
        """Current ``H×W`` uint8 labels: the initial labels with every assigned segment
        painted, then every painted answer's pixels."""
        table = self.segment_table(image_id)
        labels = self.read_initial_labels(image_id)
        painted = table.assigned >= 0
        paintings = [
            (int(i), str(p)) for i, p in zip(table.ids, table.paint, strict=True) if p is not None
        ]
        if not painted.any() and not paintings:
            return labels
        if segments is None:
            segments = self.read_segments(image_id)
        if painted.any():
            labels = paint_segments(labels, segments, table.ids[painted], table.assigned[painted])
        if paintings:  # parts of segments a person painted another class, pixel by pixel
            from a2lc.workspace.paint import apply_paint, read_paint

            shape = self.sample(image_id).shape
            for segment_id, relative in paintings:
                paint = read_paint(self.path / relative, shape=shape)
                labels = apply_paint(labels, segments == segment_id, paint)
        return labels

    def read_ground_truth(self, image_id: str) -> np.ndarray:
        """Ground truth of an image. Only the oracle and metrics call this."""
        sample = self.sample(image_id)
        if sample.gt_path is None:
            raise WorkspaceError(
                f"image {image_id!r} has no ground truth; the simulated annotator needs it"
            )
        lut, shape = self.dataset.gt_lut, sample.shape
        return self.maps.get(
            sample.gt_path,
            lambda path: read_label_map(path, lut=lut, shape=shape),
            kind="ground-truth",
        )


def _not_a_workspace_database(db_path: Path) -> WorkspaceError:
    return WorkspaceError(
        f"{db_path} is empty or not an a2lc database; restore it from a backup "
        "or create a new workspace with `a2lc init`"
    )


def _class_isthing(recorded: str | None, count: int) -> list[bool | None]:
    """Each class's recorded ``isthing`` (None where unknown: older workspaces, bad meta)."""
    try:
        values = json.loads(recorded) if recorded else None
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, list) or len(values) != count:
        return [None] * count
    return [v if isinstance(v, bool) else None for v in values]


def _rgb(values: Sequence[int]) -> tuple[int, int, int]:
    return (int(values[0]), int(values[1]), int(values[2]))


def _connect(db_path: Path) -> sqlite3.Connection:
    # Callers that share a workspace across threads (the web app) serialise access with a lock.
    connection = sqlite3.connect(
        db_path, isolation_level=None, timeout=30.0, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA busy_timeout = 30000")
    return connection


__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "Answer",
    "PoolSegments",
    "Query",
    "RoundInfo",
    "SegmentTable",
    "Workspace",
    "round_dir",
]
