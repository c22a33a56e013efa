"""The few calls of Label Studio's REST API that ``a2lc ls-backend`` needs to run the rounds.

Authentication: a personal access token (Label Studio ≥ 1.17, a JWT refresh token:
exchanged at ``/api/token/refresh/`` for short-lived access tokens, renewed on a
401) or a legacy API token (``Authorization: Token ...``, where the organisation
still allows them). Only the standard library; every failure is an
:class:`~a2lc.errors.A2LCError` that names the call and what Label Studio said.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from a2lc.errors import A2LCError

TIMEOUT_S = 60.0
PAGE_SIZE = 500


class LabelStudioError(A2LCError):
    """A Label Studio API call failed (``status``: its HTTP status, 0 when unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class LabelStudioAPI:
    """Label Studio at ``url`` as the user whose ``token`` it is."""

    def __init__(self, url: str, token: str, *, timeout: float = TIMEOUT_S) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise A2LCError(f"Label Studio URL {url!r}: expected http(s)://host[:port]")
        if not token or any(c.isspace() for c in token):
            raise A2LCError("the Label Studio access token is empty or holds spaces")
        self.url = url.rstrip("/")
        self._token = token
        self._jwt = token.count(".") == 2  # a personal access token (a JWT refresh token)
        self._access: str | None = None
        self._timeout = timeout
        self._guard = threading.Lock()

    # ------------------------------------------------------------------ transport

    def _authorization(self, *, renew: bool = False) -> str:
        if not self._jwt:
            return f"Token {self._token}"
        with self._guard:
            if self._access is None or renew:
                reply = self._send(
                    "POST", "/api/token/refresh/", {"refresh": self._token}, authorization=None
                )
                access = reply.get("access") if isinstance(reply, dict) else None
                if not isinstance(access, str):
                    raise LabelStudioError("Label Studio gave no access token for this token")
                self._access = access
            return f"Bearer {self._access}"

    def _send(
        self, method: str, path: str, body: object = None, *, authorization: str | None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if authorization is not None:
            headers["Authorization"] = authorization
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            raise LabelStudioError(
                f"Label Studio {method} {path}: HTTP {exc.code} {detail}", exc.code
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LabelStudioError(
                f"Label Studio at {self.url} is unreachable ({reason})"
            ) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise LabelStudioError(f"Label Studio {method} {path}: the reply is not JSON") from None

    def request(self, method: str, path: str, body: object = None) -> Any:
        """One authenticated call; a JWT access token is renewed once on a 401."""
        try:
            return self._send(method, path, body, authorization=self._authorization())
        except LabelStudioError as exc:
            if exc.status != 401 or not self._jwt:
                raise
        return self._send(method, path, body, authorization=self._authorization(renew=True))

    # ------------------------------------------------------------------ calls

    def project(self, project: int) -> dict[str, Any]:
        """The project (raises when it does not exist or the token may not see it)."""
        reply = self.request("GET", f"/api/projects/{project}")
        if not isinstance(reply, dict):
            raise LabelStudioError(f"Label Studio project {project}: unexpected reply")
        return reply

    def tasks(self, project: int) -> list[dict[str, Any]]:
        """Every task of ``project`` with its annotations (page by page)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            try:
                reply = self.request(
                    "GET",
                    f"/api/tasks?project={project}&fields=all&page_size={PAGE_SIZE}&page={page}",
                )
            except LabelStudioError as exc:
                if exc.status == 404 and page > 1:  # past the last page
                    break
                raise
            batch = reply.get("tasks", []) if isinstance(reply, dict) else reply
            if not isinstance(batch, list):
                raise LabelStudioError(f"Label Studio tasks of project {project}: unexpected reply")
            out.extend(t for t in batch if isinstance(t, dict))
            total = reply.get("total") if isinstance(reply, dict) else None
            if len(batch) < PAGE_SIZE or (isinstance(total, int) and len(out) >= total):
                break
            page += 1
        return out

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> int:
        """Add ``tasks`` (with their predictions) to ``project``; returns how many it took."""
        if not tasks:
            return 0
        reply = self.request("POST", f"/api/projects/{project}/import", tasks)
        count = reply.get("task_count") if isinstance(reply, dict) else None
        return int(count) if isinstance(count, int) else len(tasks)

    def local_storages(self, project: int) -> list[dict[str, Any]]:
        reply = self.request("GET", f"/api/storages/localfiles?project={project}")
        return [s for s in reply if isinstance(s, dict)] if isinstance(reply, list) else []

    def add_local_storage(self, project: int, path: str) -> None:
        """A Local Storage for ``path`` (what lets the editor show local images)."""
        self.request(
            "POST",
            "/api/storages/localfiles",
            {"project": project, "path": path, "title": "a2lc images", "use_blob_urls": False},
        )
