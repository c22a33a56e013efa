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


class AppClient:
    """A test client that sends the workspace token, and per annotator its own session id,
    as the page does (each annotator is a browser of its own)."""

    def __init__(self, app: Any) -> None:
        from starlette.testclient import TestClient

        from a2lc.web.access import workspace_token

        self.raw = TestClient(app)
        self.token = workspace_token(app.state.workspace)
        self.sessions: dict[str, str] = {}

    def session(self, annotator: str) -> str:
        """The browser session of ``annotator``, minted by the app on first use."""
        if annotator not in self.sessions:
            reply = self.raw.post("/api/session", json={}, headers={"X-A2LC-Token": self.token})
            self.sessions[annotator] = reply.json()["session"]
        return self.sessions[annotator]

    def _headers(self, body: Any) -> dict[str, str]:
        headers = {"X-A2LC-Token": self.token}
        if isinstance(body, dict) and isinstance(body.get("annotator"), str):
            headers["X-A2LC-Session"] = self.session(body["annotator"])
        return headers

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.raw.get(url, headers=self._headers(None), **kwargs)

    def post(self, url: str, *, json: Any = None, **kwargs: Any) -> Any:
        headers = {**self._headers(json), **kwargs.pop("headers", {})}
        return self.raw.post(url, json=json, headers=headers, **kwargs)

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> AppClient:
        self.raw.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.__exit__(*exc)
