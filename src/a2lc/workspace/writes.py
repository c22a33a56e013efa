"""Small write helpers shared by the workspace's parts."""

from __future__ import annotations

import datetime as _dt
import math
import sqlite3


def write_metrics(db: sqlite3.Connection, round_index: int, values: dict[str, float]) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO metrics(round, name, value) VALUES (?, ?, ?)",
        [(round_index, k, float(v)) for k, v in values.items() if math.isfinite(float(v))],
    )


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the second (as the workspace records times)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
