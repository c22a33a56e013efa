"""The workspace: SQLite state + label/segment files of one correction project."""

from a2lc.workspace.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from a2lc.workspace.workspace import Answer, Query, RoundInfo, SegmentTable, Workspace

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Answer",
    "Query",
    "RoundInfo",
    "SegmentTable",
    "Workspace",
    "migrate",
]
