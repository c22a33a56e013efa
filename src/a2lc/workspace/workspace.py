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
import datetime as _dt
import json
import logging
import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from a2lc import __version__
from a2lc.data.maps import read_label_map, read_segment_map, write_label_map, write_segment_map
from a2lc.data.readers import FORMATS, validate_dataset
from a2lc.data.sample import IGNORE_INDEX, ClassInfo, Dataset, Sample, identity_lut
from a2lc.data.segments import label_histograms, paint_segments, segment_sizes
from a2lc.errors import DataError, Problem, WorkspaceError
from a2lc.workspace.lock import acquire as acquire_lock
from a2lc.workspace.lock import release as release_lock
from a2lc.workspace.schema import SCHEMA_VERSION, migrate, schema_version
from a2lc.workspace.swap import COMMIT_KEY as SWAP_COMMIT_KEY
from a2lc.workspace.swap import FileSwap
from a2lc.workspace.swap import recover as recover_swaps

log = logging.getLogger(__name__)

CLASS_ISTHING_META = "class_isthing"
"""Meta key: JSON list of each class's ``isthing`` (true, false or null = by name)."""
DB_NAME = "a2lc.sqlite"
SEGMENTS_DIR = "segments"
LABELS_DIR = "labels"

Origin = Literal["initial", "manual", "auto"]
Source = Literal["manual", "auto"]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def round_dir(round_index: int) -> str:
    return f"{LABELS_DIR}/round_{round_index:03d}"


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
    to keep the segment's current labels unchanged.
    """

    image_id: str
    segment_id: int
    label: int | None
    annotator: str | None = None


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


@dataclass(frozen=True)
class PoolSegments:
    """Every segment of the pool as ``(N,)`` columns, by image (pool order), then segment id."""

    image_index: np.ndarray  # int64 position of the image in Workspace.samples
    segment_id: np.ndarray  # int64
    label: np.ndarray  # int64 current majority label
    manual: np.ndarray  # bool: corrected manually (never queried again, never auto-corrected)
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


class Workspace:
    """Open with :meth:`Workspace.open`, create with :meth:`Workspace.create`."""

    def __init__(
        self, path: Path, connection: sqlite3.Connection, *, lock: Path | None = None
    ) -> None:
        self.path = path
        self._db = connection
        self._dataset: Dataset | None = None
        self._lock = lock
        self.read_only = lock is None

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

        ``segments_dir`` / ``labels_dir`` hold ``<image id>.png`` per sample; both or
        neither must be given. Everything is validated before anything is written
        and the workspace is assembled in a temporary folder that is renamed into
        place at the end, so a failure leaves no half-made workspace and an
        existing one is never touched.
        """
        path = Path(path).expanduser().resolve()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise WorkspaceError(f"{path} already exists and is not empty; choose a new folder")
        if (segments_dir is None) != (labels_dir is None):
            raise WorkspaceError("give both --segments and --labels, or neither")
        # One pass: the layout's problems, the ground truth's and the initial maps' are
        # reported together, so a user fixes everything after one run.
        problems = list(dataset.problems)
        if check_ground_truth:
            validate_dataset(dataset, show_progress=show_progress, problems=problems)
        initial = None
        if segments_dir is not None and labels_dir is not None:
            initial = _load_initial_maps(
                dataset,
                Path(segments_dir),
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

        Refused once a round has started: the initial labels are what every
        round builds on.
        """
        if self._db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]:
            raise WorkspaceError("initial labels cannot change after the first round started")
        swap = FileSwap(self.path)
        try:
            rows: list[tuple[str, int, int, int, int]] = []
            files: list[tuple[str, str]] = []
            relatives: list[str] = []
            for image_id, segments, labels in maps:
                sample = self.sample(image_id)
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
                    (image_id, int(i), int(n), int(m), int(m))
                    for i, n, m in zip(ids, sizes, majority, strict=True)
                )
                files.append((image_id, lab_path))
            swap.swap(relatives)
            with self.transaction() as db:
                db.execute("DELETE FROM segments")
                db.execute("DELETE FROM label_versions")
                db.executemany(
                    "INSERT INTO segments(image_id, segment_id, pixel_count, initial_label, label) VALUES (?, ?, ?, ?, ?)",
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
        return read_segment_map(
            self.path / SEGMENTS_DIR / f"{image_id}.png", shape=self.sample(image_id).shape
        )

    def read_initial_labels(self, image_id: str) -> np.ndarray:
        self.require_segments()
        return read_label_map(
            self.path / round_dir(0) / f"{image_id}.png",
            lut=identity_lut(self.num_classes),
            shape=self.sample(image_id).shape,
        )

    def read_labels(self, image_id: str, *, segments: np.ndarray | None = None) -> np.ndarray:
        """Current ``H×W`` uint8 labels: the initial labels with every assigned segment painted."""
        table = self.segment_table(image_id)
        labels = self.read_initial_labels(image_id)
        painted = table.assigned >= 0
        if not painted.any():
            return labels
        if segments is None:
            segments = self.read_segments(image_id)
        return paint_segments(labels, segments, table.ids[painted], table.assigned[painted])

    def read_ground_truth(self, image_id: str) -> np.ndarray:
        """Ground truth of an image. Only the oracle and metrics call this."""
        sample = self.sample(image_id)
        if sample.gt_path is None:
            raise WorkspaceError(
                f"image {image_id!r} has no ground truth; the simulated annotator needs it"
            )
        return read_label_map(sample.gt_path, lut=self.dataset.gt_lut, shape=sample.shape)

    @property
    def has_ground_truth(self) -> bool:
        """Whether every pool image has ground truth (the simulated annotator needs that)."""
        return self.dataset.has_ground_truth

    @property
    def ground_truth_ids(self) -> list[str]:
        """Pool images with ground truth, in pool order (metrics are computed on these)."""
        return [s.id for s in self.samples if s.gt_path is not None]

    # ------------------------------------------------------------------ segments

    def segment_table(self, image_id: str) -> SegmentTable:
        rows = self._db.execute(
            "SELECT segment_id, pixel_count, label, COALESCE(assigned, -1), origin, origin_round "
            "FROM segments WHERE image_id = ? ORDER BY segment_id",
            (image_id,),
        ).fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [()] * 6
        return SegmentTable(
            ids=np.asarray(columns[0], dtype=np.int64),
            pixel_count=np.asarray(columns[1], dtype=np.int64),
            label=np.asarray(columns[2], dtype=np.int64),
            assigned=np.asarray(columns[3], dtype=np.int64),
            origin=np.asarray(columns[4], dtype=object),
            origin_round=np.asarray(columns[5], dtype=np.int64),
        )

    def manual_segments(self, *, before_round: int | None = None) -> dict[str, np.ndarray]:
        """Per image, ids of segments corrected manually in rounds ``< before_round`` (all if None)."""
        limit = before_round if before_round is not None else 1 << 62
        result: dict[str, list[int]] = {}
        for image_id, segment_id in self._db.execute(
            "SELECT DISTINCT image_id, segment_id FROM corrections "
            "WHERE source = 'manual' AND round < ? ORDER BY image_id, segment_id",
            (limit,),
        ):
            result.setdefault(str(image_id), []).append(int(segment_id))
        return {k: np.asarray(v, dtype=np.int64) for k, v in result.items()}

    def num_segments(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM segments").fetchone()[0])

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
    ) -> int:
        """Record a new round and its queries ``(image id, segment id, score)``, best first.

        One transaction. Refused while another round is open, or if a query names
        an unknown segment or one corrected manually in an earlier round.
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
            _write_metrics(db, round_index, {"segments_queried": float(queried)})
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
        with self.transaction() as db:
            self.write_answers(db, round_index, answers)

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

    @staticmethod
    def write_answers(db: sqlite3.Connection, round_index: int, answers: Sequence[Answer]) -> None:
        """Insert validated answers inside the caller's transaction.

        The segment's state before the answer is kept in the correction row, so
        an answer can be undone while its round is open.
        """
        now = _now()
        for answer in answers:
            before, assigned, origin, origin_round = db.execute(
                "SELECT label, assigned, origin, origin_round FROM segments "
                "WHERE image_id = ? AND segment_id = ?",
                (answer.image_id, answer.segment_id),
            ).fetchone()
            relabel = answer.label is not None
            after = int(answer.label) if answer.label is not None else int(before)
            db.execute(
                "INSERT INTO corrections(round, image_id, segment_id, before, after, relabel, source, "
                "annotator, created_at, prev_assigned, prev_origin, prev_origin_round) "
                "VALUES (?, ?, ?, ?, ?, ?, 'manual', ?, ?, ?, ?, ?)",
                (
                    round_index,
                    answer.image_id,
                    answer.segment_id,
                    int(before),
                    after,
                    int(relabel),
                    answer.annotator,
                    now,
                    assigned,
                    origin,
                    origin_round,
                ),
            )
            db.execute(
                "UPDATE segments SET label = ?, assigned = CASE WHEN ? THEN ? ELSE assigned END, "
                "origin = 'manual', origin_round = ? WHERE image_id = ? AND segment_id = ?",
                (after, int(relabel), after, round_index, answer.image_id, answer.segment_id),
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
    ) -> None:
        """Relabel ``(image id, segment id, class)`` automatically and mark ``step`` done, atomically.

        ``metrics`` (what the corrector measured) go into the same transaction.
        Manually corrected segments are never touched: such a change is refused.
        """
        now = _now()
        with self.transaction() as db:
            if metrics:
                _write_metrics(db, round_index, metrics)
            for image_id, segment_id, after in changes:
                row = db.execute(
                    "SELECT label, origin FROM segments WHERE image_id = ? AND segment_id = ?",
                    (image_id, int(segment_id)),
                ).fetchone()
                if row is None:
                    raise WorkspaceError(f"no segment {image_id}/{segment_id}")
                before, origin = int(row[0]), str(row[1])
                if origin == "manual":
                    raise WorkspaceError(
                        f"segment {image_id}/{segment_id} was corrected manually; automatic corrections may not change it"
                    )
                db.execute(
                    "INSERT INTO corrections(round, image_id, segment_id, before, after, relabel, source, annotator, created_at) "
                    "VALUES (?, ?, ?, ?, ?, 1, 'auto', NULL, ?)",
                    (round_index, image_id, int(segment_id), before, int(after), now),
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

    def pool_segments(self) -> PoolSegments:
        """Every segment of the pool in one query, as columns (see :class:`PoolSegments`)."""
        rows = self._db.execute(
            "SELECT s.idx, g.segment_id, g.label, g.origin = 'manual', g.pixel_count FROM segments g "
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
            db.execute("SELECT origin, COUNT(*) FROM segments GROUP BY origin").fetchall()
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
            },
            "rounds": rounds,
            "metrics": self.metrics(),
        }


def _not_a_workspace_database(db_path: Path) -> WorkspaceError:
    return WorkspaceError(
        f"{db_path} is empty or not an a2lc database; restore it from a backup "
        "or create a new workspace with `a2lc init`"
    )


def _write_metrics(db: sqlite3.Connection, round_index: int, values: dict[str, float]) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO metrics(round, name, value) VALUES (?, ?, ?)",
        [(round_index, k, float(v)) for k, v in values.items() if math.isfinite(float(v))],
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


def _iter_initial_maps(
    dataset: Dataset,
    segments_dir: Path,
    labels_dir: Path,
    *,
    problems: list[Problem] | None,
    show_progress: bool,
    desc: str,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield each sample's validated ``(id, segments, labels)``, one image at a time.

    With a ``problems`` list, problems are appended there and the image is
    skipped; without one, the first problem raises :class:`DataError`.
    """
    from a2lc._progress import progress

    lut = identity_lut(dataset.num_classes)
    samples = progress(
        dataset.samples, desc=desc, total=len(dataset.samples), enabled=show_progress
    )
    for sample in samples:
        found: list[Problem] = []
        segments = labels = None
        try:
            segments = read_segment_map(segments_dir / f"{sample.id}.png", shape=sample.shape)
        except DataError as exc:
            found.extend(exc.problems)
        try:
            labels = read_label_map(labels_dir / f"{sample.id}.png", lut=lut, shape=sample.shape)
        except DataError as exc:
            found.extend(exc.problems)
        if found or segments is None or labels is None:
            if problems is None:
                raise DataError(found)
            problems.extend(found)
            continue
        outside = (segments == 0) & (labels != IGNORE_INDEX)
        if outside.any():
            log.warning(
                "%s: %d labelled pixels are covered by no segment (id 0); they are set to %d (ignore)",
                labels_dir / f"{sample.id}.png",
                int(outside.sum()),
                IGNORE_INDEX,
            )
            labels = np.where(outside, np.uint8(IGNORE_INDEX), labels).astype(np.uint8)
        yield sample.id, segments, labels


def _load_initial_maps(
    dataset: Dataset,
    segments_dir: Path,
    labels_dir: Path,
    *,
    problems: list[Problem],
    show_progress: bool,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Check every map, appending each problem to ``problems``; return a stream of them.

    The stream is only valid (and should only be consumed) when no problem was found.
    """
    missing = [
        Problem(f, "folder does not exist") for f in (segments_dir, labels_dir) if not f.is_dir()
    ]
    if missing:
        problems.extend(missing)
        return iter(())
    for _ in _iter_initial_maps(
        dataset,
        segments_dir,
        labels_dir,
        problems=problems,
        show_progress=show_progress,
        desc="checking segments and labels",
    ):
        pass
    return _iter_initial_maps(
        dataset,
        segments_dir,
        labels_dir,
        problems=None,
        show_progress=show_progress,
        desc="storing segments and labels",
    )


__all__ = [
    "SCHEMA_VERSION",
    "Answer",
    "Query",
    "RoundInfo",
    "SegmentTable",
    "Workspace",
]
