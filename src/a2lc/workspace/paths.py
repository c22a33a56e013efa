"""Names of a workspace's files, relative to its folder."""

from __future__ import annotations

DB_NAME = "a2lc.sqlite"
SEGMENTS_DIR = "segments"
LABELS_DIR = "labels"


def round_dir(round_index: int) -> str:
    """Folder of the label PNGs after round ``round_index`` (0: the initial labels)."""
    return f"{LABELS_DIR}/round_{round_index:03d}"
