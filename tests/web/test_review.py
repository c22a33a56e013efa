"""The review queue's routes: lease, verdicts, undo, progress and their checks (issue #36)."""

from __future__ import annotations

from pathlib import Path

from a2lc.web.app import create_app
from a2lc.workspace import Workspace
from tests.conftest import REVIEW_CHANGES
from tests.web.answers import AppClient
from tests.web.test_app import Clock, snapshot


def client(path: Path, clock: Clock) -> AppClient:
    return AppClient(create_app(path, lease_seconds=60, clock=clock))


def test_review_by_api_accept_revert_undo(with_changes: Path) -> None:
    app = client(with_changes, Clock())
    first = app.post("/api/review/lease", json={"annotator": "rita"}).json()
    change = first["change"]
    assert first["progress"] == {
        "reviewed": 0,
        "left": REVIEW_CHANGES,
        "leased": 1,
        "by_annotator": {},
    }
    assert change["corrector"] == "proven"
    assert change["guarantee"] == "on average at most 10% of the applied changes are wrong"
    assert change["after"] != change["before"]
    assert first["resume_code"]
    view = app.get(f"/api/view/{change['image_id']}/{change['segment_id']}.png?zoom=1")
    assert view.headers["content-type"] == "image/png"

    reply = app.post(
        "/api/review/verdict",
        json={"annotator": "rita", "change_id": change["change_id"], "verdict": "revert"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["progress"]["reviewed"] == 1
    second = app.post("/api/review/lease", json={"annotator": "rita"}).json()["change"]
    assert second["change_id"] != change["change_id"]
    app.post(
        "/api/review/verdict",
        json={"annotator": "rita", "change_id": second["change_id"], "verdict": "accept"},
    )
    undone = app.post("/api/review/undo", json={"annotator": "rita"}).json()
    assert undone["change"]["change_id"] == second["change_id"]
    assert undone["progress"]["reviewed"] == 1
    with Workspace.open(with_changes, read_only=True) as ws:
        manual = [c for c in ws.corrections(1) if c["annotator"] == "rita"]
        assert [(c["segment_id"], c["after"]) for c in manual] == [
            (change["segment_id"], change["before"])
        ]
    page = app.raw.get("/review")
    assert page.status_code == 200
    assert "/static/review.js" in page.text


def test_review_requests_are_checked_before_anything_changes(with_changes: Path) -> None:
    app = client(with_changes, Clock())
    lease = app.post("/api/review/lease", json={"annotator": "rita"}).json()["change"]
    before = snapshot(with_changes)
    for body, status in (
        ({"annotator": "rita", "change_id": str(lease["change_id"]), "verdict": "accept"}, 400),
        ({"annotator": "rita", "change_id": True, "verdict": "accept"}, 400),
        ({"annotator": "rita", "change_id": lease["change_id"]}, 400),
        ({"annotator": "rita", "change_id": lease["change_id"], "verdict": "fine"}, 409),
        ({"annotator": "sam", "change_id": lease["change_id"], "verdict": "accept"}, 409),
        ({"annotator": "rita", "change_id": -1, "verdict": "accept"}, 409),
        ({"annotator": "", "change_id": lease["change_id"], "verdict": "accept"}, 409),
    ):
        reply = app.post("/api/review/verdict", json=body)
        assert reply.status_code == status, (body, reply.text)
        assert "error" in reply.json()
    assert app.raw.post("/api/review/lease", json={"annotator": "x"}).status_code == 401
    assert snapshot(with_changes) == before


def test_two_reviewers_get_different_changes_and_their_own_progress(with_changes: Path) -> None:
    app = client(with_changes, Clock())
    one = app.post("/api/review/lease", json={"annotator": "one"}).json()["change"]
    two = app.post("/api/review/lease", json={"annotator": "two"}).json()["change"]
    assert one["change_id"] != two["change_id"]
    for name, change in (("one", one), ("two", two)):
        app.post(
            "/api/review/verdict",
            json={"annotator": name, "change_id": change["change_id"], "verdict": "accept"},
        )
    progress = app.get("/api/review/progress").json()
    assert progress["by_annotator"] == {"one": 1, "two": 1}
    assert progress["left"] == REVIEW_CHANGES - 2
    # "two" cannot undo "one"'s verdict: each undoes their own.
    assert (
        app.post("/api/review/undo", json={"annotator": "two"}).json()["change"]["change_id"]
        == two["change_id"]
    )
