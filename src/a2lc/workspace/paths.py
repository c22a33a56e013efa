"""Names of a workspace's files, relative to its folder."""

from __future__ import annotations

from pathlib import Path

DB_NAME = "a2lc.sqlite"
SEGMENTS_DIR = "segments"
LABELS_DIR = "labels"


def round_dir(round_index: int) -> str:
    """Folder of the label PNGs after round ``round_index`` (0: the initial labels)."""
    return f"{LABELS_DIR}/round_{round_index:03d}"


STATE = (
    DB_NAME,
    "a2lc.lock",
    SEGMENTS_DIR,
    LABELS_DIR,
    "models",
    "cache",
    "rounds",
    "staging",
    "annotate-token",
)
"""Top-level entries that hold the workspace's state (the database's ``-wal``/``-shm``
files and anything else named ``a2lc.*`` too): no command writes an output there."""


def state_entry(workspace: Path, target: Path) -> str | None:
    """The workspace state entry ``target`` would write into or replace, else None.

    ``target`` is the workspace folder itself, or inside one of :data:`STATE` (after
    resolving links, so another name for the same place is caught too).
    """
    root = Path(workspace).resolve()
    where = Path(target).resolve()
    if where == root:
        return "the workspace folder itself"
    try:
        first = where.relative_to(root).parts[0]
    except ValueError:
        return None
    if first in STATE or first.startswith("a2lc."):
        return first
    return None
