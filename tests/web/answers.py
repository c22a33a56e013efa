"""The JSON body of ``POST /api/answer`` for a leased query, as the page sends it."""

from __future__ import annotations

from typing import Any


def answer_body(query: dict[str, Any], label: int | None, *, annotator: str) -> dict[str, Any]:
    """``label``: a class id, 255 for void, or None to keep the query's current label."""
    return {
        "annotator": annotator,
        "image_id": query["image_id"],
        "segment_id": query["segment_id"],
        "label": label,
    }
