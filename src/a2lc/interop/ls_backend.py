"""a2lc as a Label Studio ML backend: queries pre-filled in Label Studio, answers recorded at once.

Label Studio calls the label-studio-ml HTTP conventions (all JSON):

* ``GET /health`` → ``{"status": "UP", "model_class": "a2lc", ...}``;
* ``POST /setup`` (project, schema) → ``{"model_version": "a2lc-round-R"}``;
* ``POST /predict`` ``{"tasks": [...]}`` → ``{"results": [...]}``, one per task: the
  queried segment as a brush region with its current class, scored 0–1 by rank
  (Label Studio's "prediction score" column sorts the tasks as a2lc ranks them);
* ``POST /webhook`` ``{"action", "annotation", "task"}``: on ``ANNOTATION_CREATED``
  / ``ANNOTATION_UPDATED`` the answer is validated as every answer is (an open
  query of the round, a known class, the segment's own pixels or a painting of them) and recorded in
  the workspace in its own transaction; other actions are acknowledged.

The tasks are those of ``a2lc export-queries`` (their ``data`` carries the image
and segment ids). When every query of the round is answered, ``a2lc run``
continues the round. Bind to loopback (the default): the backend trusts whoever
reaches it, as a Label Studio ML backend does; the ``Host`` header is checked.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from a2lc import __version__
from a2lc.errors import A2LCError, DataError, MissingDependencyError, WorkspaceError
from a2lc.interop.label_studio import normalised_score, query_region, read_export_document
from a2lc.web.app import (
    MAX_BODY_BYTES,
    WEB_EXTRA_HELP,
    WILDCARD,
    RequestError,
    allowed_hosts,
    error_response,
    json_body,
)
from a2lc.workspace import Workspace

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError:  # pragma: no cover - exercised through the error message
    raise MissingDependencyError(WEB_EXTRA_HELP) from None

ANSWER_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
"""Webhook actions that carry an annotation to record."""
MAX_PREDICT_BODY_BYTES = 64 * 1024 * 1024
"""``/predict`` may carry many tasks; anything else stays small."""


def create_backend(workspace: Path | str, *, hosts: set[str] | None = None) -> Starlette:
    """The backend over ``workspace`` (held open until shutdown); ``hosts`` as the web app's."""
    ws = Workspace.open(workspace)
    lock = threading.Lock()  # one SQLite connection, shared by the worker threads

    def model_version() -> str:
        current = ws.open_round()
        return f"a2lc-round-{current.round}" if current else "a2lc-no-open-round"

    def health(request: Request) -> Response:
        current = ws.open_round()
        return JSONResponse(
            {
                "status": "UP",
                "model_class": "a2lc",
                "version": __version__,
                "round": current.round if current else None,
                "unanswered": ws.count_unanswered(current.round) if current else 0,
            }
        )

    def setup(request: Request) -> Response:
        return JSONResponse({"model_version": model_version()})

    def predict(request: Request) -> Response:
        tasks = request.state.body.get("tasks")
        if not isinstance(tasks, list):
            return error_response(400, "'tasks' must be a list")
        current = ws.open_round()
        queries = (
            {(q.image_id, q.segment_id): q for q in ws.queries(current.round)} if current else {}
        )
        top = max((q.score for q in queries.values()), default=0.0)
        results = []
        segment_maps: dict[str, Any] = {}
        for task in tasks:
            data = task.get("data") if isinstance(task, dict) else None
            key = (data.get("image_id"), data.get("segment_id")) if isinstance(data, dict) else None
            query = queries.get(key) if key is not None else None  # type: ignore[arg-type]
            if query is None:
                results.append({"result": [], "score": 0.0, "model_version": model_version()})
                continue
            if query.image_id not in segment_maps:
                segment_maps = {query.image_id: ws.read_segments(query.image_id)}
            region = query_region(ws, query, segment_maps[query.image_id])
            results.append(
                {
                    "result": [region],
                    "score": normalised_score(query.score, top),
                    "model_version": model_version(),
                }
            )
        return JSONResponse({"results": results})

    def webhook(request: Request) -> Response:
        body = request.state.body
        action = body.get("action")
        if action not in ANSWER_ACTIONS:
            return JSONResponse({"status": "ignored", "action": action})
        task, annotation = body.get("task"), body.get("annotation")
        if not isinstance(task, dict) or not isinstance(annotation, dict):
            return error_response(400, f"{action} needs 'task' and 'annotation' objects")
        current = ws.open_round()
        if current is None:
            return error_response(409, "no open round: start one with `a2lc run --oracle human`")
        document = [{"data": task.get("data"), "annotations": [annotation]}]
        parsed = read_export_document(ws, document, where=f"webhook {action}")
        if parsed.refused:
            return error_response(422, str(parsed.refused[0]))
        if not parsed.answers:
            return JSONResponse({"status": "no answer in the annotation"})
        (answer,) = parsed.answers
        open_queries = {(q.image_id, q.segment_id) for q in ws.unanswered(current.round)}
        if (answer.image_id, answer.segment_id) not in open_queries:
            recorded = [
                c
                for c in ws.corrections(current.round)
                if c["source"] == "manual"
                and (c["image_id"], int(c["segment_id"])) == (answer.image_id, answer.segment_id)
            ]
            if not recorded:
                return error_response(
                    409, f"{answer.image_id}/{answer.segment_id} is not an open query"
                )
            return error_response(
                409,
                f"{answer.image_id}/{answer.segment_id} is already answered; a2lc keeps the "
                "first answer of a round",
            )
        ws.record_answers(current.round, [answer])
        return JSONResponse(
            {
                "status": "recorded",
                "image_id": answer.image_id,
                "segment_id": answer.segment_id,
                "unanswered": ws.count_unanswered(current.round),
            }
        )

    def guarded(handler: Callable[[Request], Response], *, limit: int = MAX_BODY_BYTES) -> Any:
        async def endpoint(request: Request) -> Response:
            if hosts is not None and request.headers.get("host", "") not in hosts:
                return error_response(403, "this Host is not the backend's address")
            try:
                request.state.body = (
                    await json_body(request, limit=limit, allow_empty=True)
                    if request.method == "POST"
                    else {}
                )
            except RequestError as exc:
                return error_response(exc.status, str(exc))

            def run() -> Response:
                with lock:
                    return handler(request)

            try:
                return await run_in_threadpool(run)
            except (DataError, WorkspaceError) as exc:
                return error_response(422, str(exc))

        return endpoint

    routes = [
        Route("/health", guarded(health)),
        Route("/", guarded(health)),
        Route("/setup", guarded(setup), methods=["POST"]),
        Route("/predict", guarded(predict, limit=MAX_PREDICT_BODY_BYTES), methods=["POST"]),
        Route("/webhook", guarded(webhook), methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ws.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.workspace = ws
    return app


def serve_backend(
    workspace: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 9090,
    allow_hosts: tuple[str, ...] = (),
) -> None:
    """Run the backend with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError(WEB_EXTRA_HELP) from None
    if host in WILDCARD and not allow_hosts:
        raise A2LCError(
            f"--host {host or '(all)'} listens on every address: name the address Label Studio "
            "uses with --allow-host (the Host header is checked)"
        )
    app = create_backend(workspace, hosts=allowed_hosts(host, port, allow_hosts))
    uvicorn.run(app, host=host, port=port, log_level="warning")
