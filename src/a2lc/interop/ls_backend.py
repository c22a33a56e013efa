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
continues the round.

Only Label Studio gets in (:class:`BackendAccess`): the ``Host`` header must name
the backend; a request that carries an ``Origin`` header (every browser sends one
with a ``POST``; Label Studio's server sends none) is refused unless that origin is
allowed, so no web page open in the user's browser can write answers; ``POST``
bodies must be declared ``application/json`` (a form or a ``text/plain`` post is
refused before it is read); with basic authentication (Label Studio's own ML-backend
setting; required to listen beyond loopback) every request must carry it. A
``/predict`` holds at most :data:`MAX_PREDICT_TASKS` tasks and works on them a task
at a time, so answers and ``/health`` (read through its own connection, no lock
shared) are never held up by it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a2lc._version import __version__
from a2lc.errors import A2LCError, DataError, MissingDependencyError, WorkspaceError
from a2lc.interop.label_studio import normalised_score, query_region, read_export_document
from a2lc.interop.ls_loop import LoopSettings, RoundLoop
from a2lc.web.access import LOOPBACK, WILDCARD, allowed_hosts
from a2lc.web.app import MAX_BODY_BYTES, WEB_EXTRA_HELP, RequestError, error_response, json_body
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
TRAIN_ACTIONS = ("START_TRAINING",)
"""Label Studio's train action: with the loop, look at the round now."""
LOCK_WAIT_SECONDS = 10.0
"""A request waits this long for the workspace while a round runs, then answers 503."""
MAX_PREDICT_TASKS = 1000
"""Tasks one ``/predict`` may carry (Label Studio asks for one task, or for a page of them)."""
MAX_PREDICT_BODY_BYTES = 4 * 1024 * 1024
"""``/predict`` may carry many tasks (about a kilobyte each); anything else stays small."""
PREDICT_SECONDS = 60.0
"""A ``/predict`` still working after this answers 503 (ask for fewer tasks)."""
JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class BackendAccess:
    """Who may call the backend besides the ``Host`` check.

    ``origins``: browser origins allowed (``scheme://host[:port]``); a request with any
    other ``Origin`` header, ``null`` included, is refused. ``basic_auth``: ``(user,
    password)`` every request must carry (Label Studio: the model's "Basic auth" fields).
    """

    origins: frozenset[str] = frozenset()
    basic_auth: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.basic_auth is not None:
            user, password = self.basic_auth
            if not user or ":" in user or not password:
                raise ValueError("basic auth needs a user name without ':' and a password")

    def refusal(self, request: Request) -> Response | None:
        """A 401/403/415 response for a request that may not come in, else None."""
        origin = request.headers.get("origin")
        if origin is not None and origin not in self.origins:
            return error_response(
                403, f"requests from the web page at origin {origin!r} are refused"
            )
        if self.basic_auth is not None and not _authorised(request, self.basic_auth):
            response = error_response(
                401, "basic authentication required (Label Studio's model settings)"
            )
            response.headers["WWW-Authenticate"] = 'Basic realm="a2lc"'
            return response
        if request.method == "POST":
            declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if declared not in JSON_TYPES:
                return error_response(
                    415, f"the body must be sent as application/json, not {declared or 'untyped'!r}"
                )
        return None


def _authorised(request: Request, expected: tuple[str, str]) -> bool:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, f"{expected[0]}:{expected[1]}".encode())


def _task_key(task: object, index: int) -> tuple[str, int] | None:
    """A task's ``(image id, segment id)``, None for a task that is not an a2lc query.

    Raises :class:`RequestError` 400 for ids of the wrong type.
    """
    if not isinstance(task, dict):
        raise RequestError(400, f"task {index} must be an object")
    data = task.get("data")
    if not isinstance(data, dict) or ("image_id" not in data and "segment_id" not in data):
        return None
    image_id, segment_id = data.get("image_id"), data.get("segment_id")
    if not isinstance(image_id, str):
        raise RequestError(400, f"task {index}: data.image_id must be a string")
    if isinstance(segment_id, bool) or not isinstance(segment_id, int):
        raise RequestError(400, f"task {index}: data.segment_id must be a whole number")
    return image_id, segment_id


def create_backend(
    workspace: Path | str,
    *,
    hosts: set[str] | None = None,
    access: BackendAccess | None = None,
    loop: LoopSettings | None = None,
) -> Starlette:
    """The backend over ``workspace`` (held open until shutdown); ``hosts`` as the web
    app's; ``access``: origins and basic authentication (default: no browser origin, no
    authentication); ``loop``: run the rounds for this Label Studio project
    (:mod:`a2lc.interop.ls_loop`)."""
    access = access or BackendAccess()
    ws = Workspace.open(workspace)
    lock = threading.Lock()  # one SQLite connection, shared by the worker threads
    rounds = RoundLoop(ws, lock, loop) if loop is not None else None
    # /health reads through its own connection, so a long request never holds it up.
    reader = Workspace.open(workspace, read_only=True)
    reader_lock = threading.Lock()

    def model_version() -> str:
        current = ws.open_round()
        return f"a2lc-round-{current.round}" if current else "a2lc-no-open-round"

    def health(request: Request) -> Response:
        with reader_lock:
            current = reader.open_round()
            unanswered = reader.count_unanswered(current.round) if current else 0
        return JSONResponse(
            {
                "status": "UP",
                "model_class": "a2lc",
                "version": __version__,
                "round": current.round if current else None,
                "unanswered": unanswered,
                **(
                    {"loop": {"state": rounds.state, "error": rounds.error}}
                    if rounds is not None
                    else {}
                ),
            }
        )

    def setup(request: Request) -> Response:
        return JSONResponse({"model_version": model_version()})

    def predict(request: Request) -> Response:
        tasks = request.state.body.get("tasks")
        if not isinstance(tasks, list):
            return error_response(400, "'tasks' must be a list")
        if len(tasks) > MAX_PREDICT_TASKS:
            return error_response(
                413, f"{len(tasks)} tasks in one request; at most {MAX_PREDICT_TASKS}"
            )
        try:
            keys = [_task_key(task, n) for n, task in enumerate(tasks)]
        except RequestError as exc:
            return error_response(exc.status, str(exc))
        if not lock.acquire(timeout=LOCK_WAIT_SECONDS):
            return error_response(503, "a2lc is busy running a round; try again")
        try:
            current = ws.open_round()
            queries = (
                {(q.image_id, q.segment_id): q for q in ws.queries(current.round)}
                if current
                else {}
            )
            version = model_version()
        finally:
            lock.release()
        top = max((q.score for q in queries.values()), default=0.0)
        results = []
        segment_maps: dict[str, Any] = {}
        deadline = time.monotonic() + PREDICT_SECONDS
        for key in keys:
            query = queries.get(key) if key is not None else None
            if query is None:
                results.append({"result": [], "score": 0.0, "model_version": version})
                continue
            if time.monotonic() > deadline:
                return error_response(
                    503, f"{len(tasks)} tasks took over {PREDICT_SECONDS:.0f} s; ask for fewer"
                )
            with lock:  # a task at a time: answers are not held up by a long request
                if query.image_id not in segment_maps:
                    segment_maps = {query.image_id: ws.read_segments(query.image_id)}
                region = query_region(ws, query, segment_maps[query.image_id])
            results.append(
                {
                    "result": [region],
                    "score": normalised_score(query.score, top),
                    "model_version": version,
                }
            )
        return JSONResponse({"results": results})

    def webhook(request: Request) -> Response:
        body = request.state.body
        action = body.get("action")
        if action in TRAIN_ACTIONS and rounds is not None:
            rounds.wake()
            return JSONResponse({"status": "checking the round", "action": action})
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
        if rounds is not None and ws.count_unanswered(current.round) == 0:
            rounds.wake()  # the round is complete: the next one starts
        return JSONResponse(
            {
                "status": "recorded",
                "image_id": answer.image_id,
                "segment_id": answer.segment_id,
                "unanswered": ws.count_unanswered(current.round),
            }
        )

    def guarded(
        handler: Callable[[Request], Response],
        *,
        limit: int = MAX_BODY_BYTES,
        locked: bool = True,
    ) -> Any:
        async def endpoint(request: Request) -> Response:
            if hosts is not None and request.headers.get("host", "") not in hosts:
                return error_response(403, "this Host is not the backend's address")
            refused = access.refusal(request)
            if refused is not None:
                return refused
            try:
                request.state.body = (
                    await json_body(request, limit=limit, allow_empty=True)
                    if request.method == "POST"
                    else {}
                )
            except RequestError as exc:
                return error_response(exc.status, str(exc))

            def run() -> Response:
                if not locked:  # takes what it needs itself
                    return handler(request)
                if not lock.acquire(timeout=LOCK_WAIT_SECONDS):
                    return error_response(
                        503, "a2lc is busy running a round (train, score, correct); try again"
                    )
                try:
                    return handler(request)
                finally:
                    lock.release()

            try:
                return await run_in_threadpool(run)
            except (DataError, WorkspaceError) as exc:
                return error_response(422, str(exc))

        return endpoint

    routes = [
        Route("/health", guarded(health, locked=False)),
        Route("/", guarded(health, locked=False)),
        Route("/setup", guarded(setup), methods=["POST"]),
        Route(
            "/predict",
            guarded(predict, limit=MAX_PREDICT_BODY_BYTES, locked=False),
            methods=["POST"],
        ),
        Route("/webhook", guarded(webhook), methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if rounds is not None:
            rounds.start()
        try:
            yield
        finally:
            if rounds is not None:
                rounds.stop()
            if lock.acquire(timeout=LOCK_WAIT_SECONDS):  # a round still running: left to exit
                ws.close()
                lock.release()
            reader.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.workspace = ws
    app.state.lock = lock
    app.state.rounds = rounds
    return app


PASSWORD_VARIABLE = "A2LC_BACKEND_PASSWORD"
"""Where ``ls-backend`` reads the basic-auth password (never from the command line)."""


def check_exposure(
    host: str, *, allow_hosts: tuple[str, ...], access: BackendAccess, without_auth: bool
) -> None:
    """Refuse (:class:`A2LCError`) to listen on every address unnamed, or beyond loopback
    without basic authentication unless ``without_auth``."""
    if host in WILDCARD and not allow_hosts:
        raise A2LCError(
            f"--host {host or '(all)'} listens on every address: name the address Label Studio "
            "uses with --allow-host (the Host header is checked)"
        )
    if host not in LOOPBACK and access.basic_auth is None and not without_auth:
        raise A2LCError(
            f"--host {host or '(all)'} listens beyond this machine: set a basic-auth user with "
            f"--basic-auth-user NAME and its password in the {PASSWORD_VARIABLE} variable (the "
            "same pair goes in Label Studio's model settings), or pass --no-auth on a network "
            "you trust"
        )


def serve_backend(
    workspace: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 9090,
    allow_hosts: tuple[str, ...] = (),
    access: BackendAccess | None = None,
    without_auth: bool = False,
    loop: LoopSettings | None = None,
) -> None:
    """Run the backend with uvicorn until interrupted.

    Beyond loopback, basic authentication is required unless ``without_auth`` says
    the network is trusted.
    """
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError(WEB_EXTRA_HELP) from None
    access = access or BackendAccess()
    check_exposure(host, allow_hosts=allow_hosts, access=access, without_auth=without_auth)
    app = create_backend(
        workspace, hosts=allowed_hosts(host, port, allow_hosts), access=access, loop=loop
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
