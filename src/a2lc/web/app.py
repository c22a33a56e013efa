"""The annotation web app: an ASGI (Starlette) app over one workspace's open round.

Routes (JSON unless said otherwise):

* ``GET /``: the single-page app; ``GET /static/...``: its script and style.
* ``GET /api/info``: round, classes (id, name, colour), the void id.
* ``POST /api/lease`` ``{"annotator"}``: the annotator's query (leased to them).
* ``POST /api/answer`` ``{"annotator", "image_id", "segment_id", "label"}``:
  ``label`` is a class id, 255 (void) or null (keep the current label).
* ``POST /api/paint``: an answer with ``"paint"``, a PNG data URL of the zoomed view
  whose red channel holds ``class + 1`` where the person painted (255: void, 0: not
  painted); those pixels of the segment take their class (bodies up to 8 MB).
* ``POST /api/undo`` ``{"annotator"}``: take back the annotator's last answer.
* ``POST /api/release`` ``{"annotator"}``: give the annotator's lease back (the page
  calls it when it is closed or hidden).
* ``GET /api/progress``: answered / leased / total, per annotator.
* ``GET /api/view/{image_id}/{segment_id}.png?zoom=0|1&exposure=auto|off``: the
  segment highlighted, with automatic exposure unless ``off``.
* ``GET /review`` and ``/api/review/...``: the review queue of automatic changes
  (:mod:`a2lc.web.review`).

Only images of the workspace are served, looked up by id (never by path).
Every request is validated before anything changes: malformed JSON or fields
→ 400, unknown image or segment → 404, an expired or foreign lease or a query
that is not open → 409, a class id out of range → 422.

Trust model. Every ``/api`` request needs the workspace's secret token (header
``X-A2LC-Token``; images, which an ``<img>`` fetches without headers, take the
``HttpOnly; SameSite=Strict`` cookie the app sets on an answer to a request with
the header; ``a2lc annotate`` prints a URL that carries it once, and the page takes
it out of the address bar) → 401 without it; every response says
``Referrer-Policy: no-referrer``; the ``Host`` header must name the address the
app was started on (no DNS rebinding) → 403; a ``POST`` must be
``application/json`` (no cross-site form posts) → 415 and come from the app's own
origin when the browser says where it comes from → 403. An annotator name belongs
to the first browser session that uses it (header ``X-A2LC-Session``, an id the
app mints) and stays with it, so nobody else can answer or undo as that annotator
→ 403 (which says how to go on); a session holds one lease at a time whatever
names it used. The same person in another browser moves the name (and its leased
query) there with the name's *resume code*, which only the owning browser is shown
(``"resume": CODE``; a wrong code → 403). Bodies over 16 KB are refused while
reading → 413.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from a2lc.data.images import read_image
from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import A2LCError, MissingDependencyError, WorkspaceError
from a2lc.web.access import (
    SESSION_HEADER,
    TOKEN_COOKIE,
    TOKEN_HEADER,
    WILDCARD,
    _mac,
    _minted,
    _normal_code,
    allowed_hosts,
    workspace_token,
)
from a2lc.web.render import context_crop, segment_view
from a2lc.workspace import Workspace
from a2lc.workspace.annotation import (
    DEFAULT_LEASE_SECONDS,
    AnnotationDesk,
    Lease,
    LeaseError,
    canonical_name,
)
from a2lc.workspace.review import ReviewDesk

WEB_EXTRA_HELP = 'the annotation app needs starlette and uvicorn: pip install "a2lc[web]"'

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
except ImportError:  # pragma: no cover - exercised through the error message
    raise MissingDependencyError(WEB_EXTRA_HELP) from None

MAX_BODY_BYTES = 16_384
MAX_PAINT_BODY_BYTES = 8 * 1024 * 1024
"""An answer may carry a painting (a PNG of the zoomed view)."""
PAINT_PREFIX = "data:image/png;base64,"
STATIC = resources.files("a2lc.web") / "static"


class RequestError(A2LCError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(
    workspace: Path | str,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    clock: Callable[[], float] | None = None,
    hosts: set[str] | None = None,
) -> Starlette:
    """The app over ``workspace``; it holds the workspace open until shutdown.

    ``hosts``: accepted ``Host`` header values (see :func:`allowed_hosts`); None
    accepts any (for in-process tests only: :func:`serve` always passes them).
    """
    from a2lc.web.review import review_routes  # starlette is there: checked on import

    ws = Workspace.open(workspace)
    desk = AnnotationDesk(ws, lease_seconds=lease_seconds, **({"clock": clock} if clock else {}))
    review_desk = ReviewDesk(ws, lease_seconds=lease_seconds, **({"clock": clock} if clock else {}))
    lock = threading.Lock()  # one SQLite connection, shared by the worker threads
    image_ids = {s.id for s in ws.samples}
    segment_ids: dict[str, set[int]] = {}  # per image, read on first use
    token = workspace_token(ws)
    session_key = hashlib.sha256(b"a2lc annotate sessions\0" + token.encode()).digest()

    def check_request(request: Request) -> None:
        """Token, Host, Origin and content type, before the body is read."""
        if hosts is not None and request.headers.get("host", "") not in hosts:
            raise RequestError(403, "this Host is not the app's address")
        # The header, or (images only: an <img> sends no header) the SameSite=Strict
        # cookie the app sets on an answer to a request that carried the header.
        given = request.headers.get(TOKEN_HEADER) or (
            request.cookies.get(TOKEN_COOKIE, "") if request.method == "GET" else ""
        )
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise RequestError(401, "missing or wrong token: open the URL `a2lc annotate` printed")
        if request.method == "POST":
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise RequestError(415, "requests must be application/json")
            origin = request.headers.get("origin")
            if origin is not None and origin not in {
                f"{scheme}://{request.headers.get('host', '')}" for scheme in ("http", "https")
            }:
                raise RequestError(403, f"requests from {origin} are not allowed")

    def check_owner(request: Request, annotator: str) -> None:
        """An annotator name belongs to one browser session (stored, so restarts keep it).

        Sessions are minted by the app (``/api/session``: a random id and its MAC), so a
        made-up one is refused; ``annotator`` is already canonical.
        """
        session = request.headers.get(SESSION_HEADER, "")
        if not _minted(session, session_key):
            raise RequestError(
                400, f"missing or unknown {SESSION_HEADER} header (ask /api/session for one)"
            )
        digest = hashlib.sha256(session.encode()).hexdigest()
        request.state.session_sha256 = digest  # the owner's, once this check passes
        db = ws.connection
        row = db.execute(
            "SELECT session_sha256 FROM annotator_sessions WHERE annotator = ?", (annotator,)
        ).fetchone()
        owner = row[0] if row else None
        if owner is not None and not hmac.compare_digest(owner, digest):
            code = request.state.body.get("resume")
            if code is None:
                raise RequestError(
                    403,
                    f"annotator {annotator!r} is in use in another browser: enter the resume "
                    f"code shown there to continue here as {annotator!r} (that browser then "
                    "stops), or pick another name",
                )
            if not isinstance(code, str) or not hmac.compare_digest(
                _normal_code(code), _normal_code(resume_code(annotator, owner))
            ):
                raise RequestError(403, f"that is not the resume code of annotator {annotator!r}")
            owner = None  # the same person in a new browser: the name, and its lease, move here
        if owner is None:
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO annotator_sessions(annotator, session_sha256) "
                    "VALUES (?, ?)",
                    (annotator, digest),
                )
        # One lease per session: leases held under the other names it used go back (the
        # names stay its own, so nobody can claim them and undo their answers).
        held_elsewhere = db.execute(
            "SELECT DISTINCT l.annotator FROM leases l JOIN annotator_sessions s "
            "ON s.annotator = l.annotator WHERE s.session_sha256 = ? AND l.annotator != ?",
            (digest, annotator),
        ).fetchall()
        for (name,) in held_elsewhere:
            desk.release(name)

    def resume_code(annotator: str, owner_sha256: str) -> str:
        """The code that moves ``annotator`` away from the session whose hash is given."""
        mac = hmac.new(
            session_key, f"resume\0{annotator}\0{owner_sha256}".encode(), hashlib.sha256
        ).digest()
        text = base64.b32encode(mac).decode()[:8]
        return f"{text[:4]}-{text[4:]}"

    def owned_code(request: Request) -> str:
        """The resume code of the request's (canonical, owner-checked) annotator."""
        return resume_code(request.state.body["annotator"], request.state.session_sha256)

    def mint_session(request: Request) -> Response:
        """A session id for this browser: the one it holds if this app minted it, else new."""
        held = request.state.body.get("session")
        if isinstance(held, str) and _minted(held, session_key):
            return JSONResponse({"session": held})
        nonce = secrets.token_urlsafe(18)
        return JSONResponse({"session": f"{nonce}.{_mac(nonce, session_key)}"})

    def guarded(
        handler: Callable[[Request], Response], *, limit: int = MAX_BODY_BYTES
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            def run() -> Response:
                with lock:
                    body = request.state.body
                    if "annotator" in body:
                        # One form of the name for the owner check and for the desk.
                        body["annotator"] = canonical_name(body["annotator"])
                        check_owner(request, body["annotator"])
                    return handler(request)

            try:
                check_request(request)
                request.state.body = (
                    await json_body(request, limit=limit) if request.method == "POST" else {}
                )
                return await run_in_threadpool(run)
            except RequestError as exc:
                return error_response(exc.status, str(exc))
            except LeaseError as exc:
                return error_response(409, str(exc))
            except WorkspaceError as exc:
                return error_response(409, str(exc))

        return endpoint

    def known_segment(image_id: str, segment_id: int) -> None:
        if image_id not in image_ids:
            raise RequestError(404, f"no image {image_id!r} in this workspace")
        if image_id not in segment_ids:
            segment_ids[image_id] = set(ws.segment_table(image_id).ids.tolist())
        if segment_id not in segment_ids[image_id]:
            raise RequestError(404, f"image {image_id!r} has no segment {segment_id}")

    def query_payload(lease: Lease | None) -> dict[str, Any] | None:
        if lease is None:
            return None
        q = lease.query
        table = ws.segment_table(q.image_id)
        row = int(np.flatnonzero(table.ids == q.segment_id)[0])
        label = int(table.label[row])
        return {
            "image_id": q.image_id,
            "segment_id": q.segment_id,
            "score": q.score,
            "rank": q.rank,
            "label": label,
            "pixels": int(table.pixel_count[row]),
            "lease_expires_at": lease.expires_at,
        }

    def progress_payload() -> dict[str, Any]:
        p = desk.progress()
        return {
            "answered": p.answered,
            "total": p.total,
            "leased": p.leased,
            "by_annotator": p.by_annotator,
        }

    def info(request: Request) -> Response:
        current = ws.open_round()
        return JSONResponse(
            {
                "workspace": ws.path.name,
                "round": current.round if current else None,
                "classes": [
                    {"id": c.id, "name": c.name, "color": c.color} for c in ws.dataset.classes
                ],
                "void": IGNORE_INDEX,
                "lease_seconds": desk.lease_seconds,
            }
        )

    def lease(request: Request) -> Response:
        annotator = _field(request.state.body, "annotator", str)
        payload = query_payload(desk.lease(annotator))
        return JSONResponse(
            {"query": payload, "progress": progress_payload(), "resume_code": owned_code(request)}
        )

    def answer(request: Request) -> Response:
        body = request.state.body
        annotator = _field(body, "annotator", str)
        image_id = _field(body, "image_id", str)
        segment_id = _field(body, "segment_id", int)
        if "label" not in body:
            raise RequestError(
                400, "missing field 'label' (a class id, 255 for void, or null to keep)"
            )
        label = body["label"]
        if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
            raise RequestError(400, "'label' must be an integer class id, 255 or null")
        if label is not None and not (0 <= label < ws.num_classes or label == IGNORE_INDEX):
            raise RequestError(
                422, f"class {label} is not 0..{ws.num_classes - 1} or {IGNORE_INDEX} (void)"
            )
        known_segment(image_id, segment_id)
        paint = None
        if request.url.path == "/api/paint":
            if "paint" not in body:
                raise RequestError(400, "missing field 'paint' (a PNG data URL)")
            paint = decode_paint(body["paint"], ws.read_segments(image_id) == segment_id)
            if paint.max() < 0:
                raise RequestError(422, "nothing is painted inside the segment")
        elif "paint" in body:
            raise RequestError(400, "a painted answer goes to /api/paint")
        desk.answer(annotator, image_id, segment_id, label, paint=paint)
        return JSONResponse({"ok": True, "progress": progress_payload()})

    def undo(request: Request) -> Response:
        annotator = _field(request.state.body, "annotator", str)
        query = desk.undo(annotator)
        payload = query_payload(desk.lease(annotator)) if query else None
        return JSONResponse({"query": payload, "progress": progress_payload()})

    def release(request: Request) -> Response:
        annotator = _field(request.state.body, "annotator", str)
        released = desk.release(annotator)
        return JSONResponse({"released": released, "progress": progress_payload()})

    def progress(request: Request) -> Response:
        return JSONResponse(progress_payload())

    def view(request: Request) -> Response:
        image_id = request.path_params["image_id"]
        try:
            segment_id = int(request.path_params["segment_id"])
        except ValueError:
            raise RequestError(400, "segment id must be an integer") from None
        zoom = request.query_params.get("zoom", "1")
        if zoom not in ("0", "1"):
            raise RequestError(400, "zoom must be 0 or 1")
        exposure = request.query_params.get("exposure", "auto")
        if exposure not in ("auto", "off"):
            raise RequestError(400, "exposure must be auto or off")
        known_segment(image_id, segment_id)
        sample = ws.sample(image_id)
        image = read_image(sample.image_path)
        segments = ws.read_segments(image_id)
        if image.shape[:2] != segments.shape:
            image = np.asarray(
                Image.fromarray(image).resize(segments.shape[::-1], Image.Resampling.BILINEAR)
            )
        picture = segment_view(
            image, segments == segment_id, zoom=zoom == "1", exposure=exposure == "auto"
        )
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        return Response(
            buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "max-age=3600"}
        )

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    routes = [
        Route("/", index),
        Route("/api/info", guarded(info)),
        Route("/api/session", guarded(mint_session), methods=["POST"]),
        Route("/api/lease", guarded(lease), methods=["POST"]),
        Route("/api/answer", guarded(answer), methods=["POST"]),
        Route("/api/paint", guarded(answer, limit=MAX_PAINT_BODY_BYTES), methods=["POST"]),
        Route("/api/undo", guarded(undo), methods=["POST"]),
        Route("/api/release", guarded(release), methods=["POST"]),
        Route("/api/progress", guarded(progress)),
        Route("/api/view/{image_id}/{segment_id}.png", guarded(view)),
        *review_routes(
            ws, review_desk, guarded=guarded, field=_field, owned_code=owned_code, static=STATIC
        ),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ws.close()

    app = Starlette(
        routes=routes, lifespan=lifespan, middleware=[Middleware(_Headers, token=token)]
    )
    app.state.workspace = ws
    return app


class _Headers:
    """Every response: ``Referrer-Policy: no-referrer``; an answer to a request that
    carried the token header also sets the image cookie (HttpOnly, SameSite=Strict)."""

    def __init__(self, app: Any, *, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(TOKEN_HEADER.encode(), b"")
        authorised = hmac.compare_digest(given, self.token.encode())

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"referrer-policy", b"no-referrer")]
                if authorised:
                    cookie = (
                        f"{TOKEN_COOKIE}={self.token}; Path=/api/view; HttpOnly; SameSite=Strict"
                    )
                    extra.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, sending)


async def json_body(
    request: Request, *, limit: int = MAX_BODY_BYTES, allow_empty: bool = False
) -> dict[str, Any]:
    """The request's JSON object, read no further than ``limit`` bytes.

    Raises :class:`RequestError` 413 (too large) or 400 (not a JSON object); an empty
    body is ``{}`` with ``allow_empty``.
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestError(413, "request body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # stop reading as soon as it is too large
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "request body too large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if allow_empty and not raw:
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise RequestError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    return body


def decode_paint(value: object, segment: np.ndarray) -> np.ndarray:
    """A painting sent by the page as ``H×W`` int16 over the whole image (``-1``: unpainted).

    ``value``: a PNG data URL the size of the zoomed view (:func:`context_crop` of the
    ``H×W`` bool ``segment``) whose red channel is 0 (unpainted), ``class + 1``, or 255
    (void). Pixels painted outside the segment are dropped (the brush may stray over
    its edge). Raises :class:`RequestError` 400/422 for anything else.
    """
    import base64
    import binascii

    if not isinstance(value, str) or not value.startswith(PAINT_PREFIX):
        raise RequestError(400, f"'paint' must be a PNG data URL ({PAINT_PREFIX}...)")
    try:
        raw = base64.b64decode(value[len(PAINT_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "'paint' is not valid base64") from None
    y0, x0, y1, x1 = context_crop(segment)
    try:
        with Image.open(io.BytesIO(raw)) as picture:
            if picture.format != "PNG" or picture.size != (x1 - x0, y1 - y0):
                raise RequestError(
                    422,
                    f"'paint' must be a PNG of the zoomed view, {x1 - x0}×{y1 - y0} pixels",
                )
            red = np.asarray(picture.convert("RGBA"))[:, :, 0].astype(np.int16)
    except (OSError, Image.DecompressionBombError, ValueError):
        raise RequestError(400, "'paint' is not a readable PNG") from None
    classes = np.where(red == 255, np.int16(IGNORE_INDEX), red - 1)
    paint = np.full(segment.shape, -1, dtype=np.int16)
    paint[y0:y1, x0:x1] = classes
    paint[~segment] = -1
    return paint


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    if name not in body:
        raise RequestError(400, f"missing field {name!r}")
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise RequestError(400, f"field {name!r} must be a {kind.__name__}")
    return value


def error_response(status: int, message: str) -> JSONResponse:
    """``{"error": message}`` with HTTP ``status``."""
    return JSONResponse({"error": message}, status_code=status)


def serve(
    workspace: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    allow_hosts: tuple[str, ...] = (),
) -> None:
    """Run the app with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError(WEB_EXTRA_HELP) from None
    if host in WILDCARD and not allow_hosts:
        raise A2LCError(
            f"--host {host or '(all)'} listens on every address: name the address people will "
            "open with --allow-host (the Host header is checked)"
        )
    app = create_app(
        workspace, lease_seconds=lease_seconds, hosts=allowed_hosts(host, port, allow_hosts)
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
