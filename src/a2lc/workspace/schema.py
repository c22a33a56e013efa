"""The workspace database schema and its forward migrations.

``PRAGMA user_version`` holds the schema version. Migration ``k`` (1-based)
upgrades a database from version ``k-1`` to ``k``; opening a workspace applies
the missing ones in order, each in its own transaction. Never edit a released
migration: append a new one.
"""

from __future__ import annotations

import sqlite3

from a2lc.errors import WorkspaceError

MIGRATIONS: tuple[str, ...] = (
    # 1: the core state of a correction project.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE classes (
        id    INTEGER PRIMARY KEY,
        name  TEXT NOT NULL,
        color TEXT NOT NULL              -- JSON [r, g, b]
    );
    CREATE TABLE samples (
        idx        INTEGER PRIMARY KEY,  -- position in the pool (stable order)
        id         TEXT NOT NULL UNIQUE,
        image_path TEXT NOT NULL,        -- referenced, never copied
        gt_path    TEXT,
        width      INTEGER NOT NULL,
        height     INTEGER NOT NULL
    );
    CREATE TABLE segments (
        image_id     TEXT NOT NULL REFERENCES samples(id),
        segment_id   INTEGER NOT NULL CHECK (segment_id > 0),
        pixel_count  INTEGER NOT NULL CHECK (pixel_count > 0),
        initial_label INTEGER NOT NULL,  -- majority label of the initial labels
        label        INTEGER NOT NULL,   -- majority label now
        assigned     INTEGER,            -- class painted over the whole segment, NULL = pixels keep initial labels
        origin       TEXT NOT NULL DEFAULT 'initial' CHECK (origin IN ('initial', 'manual', 'auto')),
        origin_round INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (image_id, segment_id)
    ) WITHOUT ROWID;
    CREATE TABLE rounds (
        round       INTEGER PRIMARY KEY CHECK (round > 0),
        status      TEXT NOT NULL CHECK (status IN ('querying', 'closed')),
        strategy    TEXT NOT NULL,
        budget      INTEGER NOT NULL,
        config      TEXT NOT NULL,       -- JSON of the options that produced the queries
        started_at  TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE TABLE queries (
        round      INTEGER NOT NULL REFERENCES rounds(round),
        image_id   TEXT NOT NULL,
        segment_id INTEGER NOT NULL,
        score      REAL NOT NULL,
        rank       INTEGER NOT NULL,
        PRIMARY KEY (round, image_id, segment_id),
        UNIQUE (round, rank),
        FOREIGN KEY (image_id, segment_id) REFERENCES segments(image_id, segment_id)
    );
    CREATE TABLE corrections (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        round      INTEGER NOT NULL,
        image_id   TEXT NOT NULL,
        segment_id INTEGER NOT NULL,
        before     INTEGER NOT NULL,     -- majority label before
        after      INTEGER NOT NULL,     -- majority label after
        relabel    INTEGER NOT NULL,     -- 1: the whole segment was set to `after`
        source     TEXT NOT NULL CHECK (source IN ('manual', 'auto')),
        annotator  TEXT,
        created_at TEXT NOT NULL,
        FOREIGN KEY (image_id, segment_id) REFERENCES segments(image_id, segment_id)
    );
    CREATE INDEX corrections_by_round ON corrections(round, source);
    CREATE UNIQUE INDEX one_manual_answer ON corrections(round, image_id, segment_id)
        WHERE source = 'manual';
    CREATE TABLE label_versions (
        image_id TEXT NOT NULL REFERENCES samples(id),
        round    INTEGER NOT NULL,
        path     TEXT NOT NULL,          -- relative to the workspace
        PRIMARY KEY (image_id, round)
    );
    """,
    # 2: measurements per round (data mIoU, model mIoU, ...), kept beside the state.
    """
    CREATE TABLE metrics (
        round INTEGER NOT NULL,
        name  TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (round, name)
    );
    """,
    # 3: completed steps of the correction loop, so an interrupted run resumes.
    """
    CREATE TABLE steps (
        round       INTEGER NOT NULL,
        name        TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        detail      TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (round, name)
    );
    """,
    # 4: people answering queries: leases, and the state an answer replaced (for undo).
    """
    CREATE TABLE leases (
        round      INTEGER NOT NULL REFERENCES rounds(round),
        image_id   TEXT NOT NULL,
        segment_id INTEGER NOT NULL,
        annotator  TEXT NOT NULL,
        expires_at REAL NOT NULL,        -- unix seconds
        PRIMARY KEY (round, image_id, segment_id),
        FOREIGN KEY (round, image_id, segment_id) REFERENCES queries(round, image_id, segment_id)
    );
    CREATE INDEX leases_by_annotator ON leases(round, annotator);
    ALTER TABLE corrections ADD COLUMN prev_assigned INTEGER;
    ALTER TABLE corrections ADD COLUMN prev_origin TEXT;
    ALTER TABLE corrections ADD COLUMN prev_origin_round INTEGER;
    """,
    # 5: segments of images a person labelled (ground truth given with a partial dataset):
    # their labels are the person's, never queried, never changed automatically.
    """
    ALTER TABLE segments ADD COLUMN given INTEGER NOT NULL DEFAULT 0 CHECK (given IN (0, 1));
    """,
    # 6: painted answers: the painting that sets part of a segment's pixels (a file under
    # paints/), on the segment and on the answer (with the one it replaced, for undo).
    """
    ALTER TABLE segments ADD COLUMN paint TEXT;
    ALTER TABLE corrections ADD COLUMN paint TEXT;
    ALTER TABLE corrections ADD COLUMN prev_paint TEXT;
    """,
    # 7: which browser session owns each annotator name (was one JSON value rewritten
    # whole on every new name): one row each, so a claim costs the same however many
    # names were ever used. The session is stored as its SHA-256.
    """
    CREATE TABLE annotator_sessions (
        annotator      TEXT PRIMARY KEY,
        session_sha256 TEXT NOT NULL
    );
    CREATE INDEX annotator_sessions_by_session ON annotator_sessions(session_sha256);
    INSERT OR REPLACE INTO annotator_sessions(annotator, session_sha256)
        SELECT key, value FROM json_each(
            COALESCE((SELECT value FROM meta WHERE key = 'annotate_sessions'), '{}'));
    DELETE FROM meta WHERE key = 'annotate_sessions';
    """,
    # 8: evidence with every automatic change (which corrector, its confidence, the
    # guarantee and what backed it), the state each one replaced (for revert), reverts,
    # and the changes a revert took back (never proposed again). Changes recorded before:
    # the corrector is read from the round's steps, the replaced state rebuilt from the
    # segment's earlier automatic change (else its initial state).
    """
    ALTER TABLE corrections ADD COLUMN corrector TEXT;
    ALTER TABLE corrections ADD COLUMN confidence REAL;
    ALTER TABLE corrections ADD COLUMN evidence TEXT;
    ALTER TABLE corrections ADD COLUMN reverted_by INTEGER;
    CREATE TABLE reverts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        round       INTEGER NOT NULL,
        corrector   TEXT,
        from_class  INTEGER,
        to_class    INTEGER,
        changes     INTEGER NOT NULL,
        skipped     INTEGER NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE TABLE rejected_changes (
        image_id   TEXT NOT NULL,
        segment_id INTEGER NOT NULL,
        after      INTEGER NOT NULL,
        revert     INTEGER NOT NULL REFERENCES reverts(id),
        PRIMARY KEY (image_id, segment_id, after)
    ) WITHOUT ROWID;
    UPDATE corrections SET
        corrector = COALESCE(
            (SELECT s.name FROM steps s WHERE s.round = corrections.round
             AND s.name IN ('proven', 'checked') LIMIT 1), 'lcm'),
        evidence = '{"recorded": "before schema 8: no evidence kept"}'
        WHERE source = 'auto';
    UPDATE corrections SET
        prev_assigned = (SELECT e.after FROM corrections e WHERE e.source = 'auto'
            AND e.image_id = corrections.image_id AND e.segment_id = corrections.segment_id
            AND e.id < corrections.id ORDER BY e.id DESC LIMIT 1),
        prev_origin = CASE WHEN EXISTS (SELECT 1 FROM corrections e WHERE e.source = 'auto'
            AND e.image_id = corrections.image_id AND e.segment_id = corrections.segment_id
            AND e.id < corrections.id) THEN 'auto' ELSE 'initial' END,
        prev_origin_round = COALESCE((SELECT e.round FROM corrections e WHERE e.source = 'auto'
            AND e.image_id = corrections.image_id AND e.segment_id = corrections.segment_id
            AND e.id < corrections.id ORDER BY e.id DESC LIMIT 1), 0)
        WHERE source = 'auto' AND prev_origin IS NULL;
    """,
    # 9: people reviewing automatic changes: one verdict per change (accept or revert), the
    # answer it was recorded as and the revert it made (for undo), and review leases.
    """
    CREATE TABLE reviews (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        change_id     INTEGER NOT NULL UNIQUE REFERENCES corrections(id),
        annotator     TEXT NOT NULL,
        verdict       TEXT NOT NULL CHECK (verdict IN ('accept', 'revert')),
        correction_id INTEGER NOT NULL REFERENCES corrections(id),
        revert_id     INTEGER REFERENCES reverts(id),
        created_at    TEXT NOT NULL
    );
    CREATE INDEX reviews_by_annotator ON reviews(annotator, id);
    CREATE TABLE review_leases (
        change_id  INTEGER PRIMARY KEY REFERENCES corrections(id),
        annotator  TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX review_leases_by_annotator ON review_leases(annotator);
    CREATE INDEX corrections_by_segment ON corrections(image_id, segment_id, source);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def migrate(connection: sqlite3.Connection, *, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations from the database's version up to ``target``; return it.

    Raises :class:`WorkspaceError` for a database newer than this a2lc.
    """
    current = schema_version(connection)
    if current > SCHEMA_VERSION:
        raise WorkspaceError(
            f"workspace schema version {current} is newer than this a2lc supports "
            f"({SCHEMA_VERSION}); upgrade a2lc"
        )
    for version in range(current + 1, target + 1):
        script = MIGRATIONS[version - 1]
        # executescript commits first; wrap each migration in its own transaction.
        try:
            connection.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise WorkspaceError(
                f"migrating the workspace to schema {version} failed: {exc}"
            ) from exc
    return schema_version(connection)
