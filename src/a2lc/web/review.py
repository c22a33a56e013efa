"""The annotation app's review queue of automatic changes (routes; see :mod:`a2lc.web.app`).

* ``GET /review``: the review page.
* ``POST /api/review/lease`` ``{"annotator"}``: the reviewer's change (leased to them),
  with its old and new label, corrector, round, confidence and guarantee.
* ``POST /api/review/verdict`` ``{"annotator", "change_id", "verdict"}``: ``accept`` or
  ``revert`` (:class:`a2lc.workspace.review.ReviewDesk`).
* ``POST /api/review/undo`` ``{"annotator"}``: take back the reviewer's last verdict.
* ``POST /api/review/release`` ``{"annotator"}``: give the lease back.
* ``GET /api/review/progress``: reviewed / left / leased, per reviewer.

The same token, session, owner and body rules as the query routes (the app's
``guarded`` wrapper); a change is named by its id, validated as an integer, and
only the holder of its lease can judge it (409 otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from a2lc.workspace import Workspace
from a2lc.workspace.review import ReviewDesk, ReviewLease


def review_routes(
    ws: Workspace,
    desk: ReviewDesk,
    *,
    guarded: Callable[[Callable[[Request], Response]], Any],
    field: Callable[[dict[str, Any], str, type], Any],
    owned_code: Callable[[Request], str],
    static: Any,
) -> list[Route]:
    """The review routes over ``desk``, each wrapped by the app's ``guarded``."""

    def payload(lease: ReviewLease | None) -> dict[str, Any] | None:
        if lease is None:
            return None
        change = lease.change
        return {
            "change_id": change.id,
            "image_id": change.image_id,
            "segment_id": change.segment_id,
            "round": change.round,
            "before": change.before,
            "after": change.after,
            "corrector": change.corrector,
            "confidence": change.confidence,
            "guarantee": change.evidence.get("statement")
            or change.evidence.get("recorded")
            or "no guarantee recorded",
            "lease_expires_at": lease.expires_at,
        }

    def progress_payload() -> dict[str, Any]:
        p = desk.progress()
        return {
            "reviewed": p.reviewed,
            "left": p.left,
            "leased": p.leased,
            "by_annotator": p.by_annotator,
        }

    def lease(request: Request) -> Response:
        annotator = field(request.state.body, "annotator", str)
        return JSONResponse(
            {
                "change": payload(desk.lease(annotator)),
                "progress": progress_payload(),
                "resume_code": owned_code(request),
            }
        )

    def verdict(request: Request) -> Response:
        body = request.state.body
        annotator = field(body, "annotator", str)
        change_id = field(body, "change_id", int)
        given = field(body, "verdict", str)
        change = desk.verdict(annotator, change_id, given)
        return JSONResponse(
            {"ok": True, "change_id": change.id, "verdict": given, "progress": progress_payload()}
        )

    def undo(request: Request) -> Response:
        annotator = field(request.state.body, "annotator", str)
        change = desk.undo(annotator)
        return JSONResponse(
            {
                "change": payload(desk.lease(annotator)) if change else None,
                "progress": progress_payload(),
            }
        )

    def release(request: Request) -> Response:
        annotator = field(request.state.body, "annotator", str)
        return JSONResponse({"released": desk.release(annotator), "progress": progress_payload()})

    def progress(request: Request) -> Response:
        return JSONResponse(progress_payload())

    async def page(request: Request) -> Response:
        return FileResponse(str(static / "review.html"), media_type="text/html")

    return [
        Route("/review", page),
        Route("/api/review/lease", guarded(lease), methods=["POST"]),
        Route("/api/review/verdict", guarded(verdict), methods=["POST"]),
        Route("/api/review/undo", guarded(undo), methods=["POST"]),
        Route("/api/review/release", guarded(release), methods=["POST"]),
        Route("/api/review/progress", guarded(progress)),
    ]
