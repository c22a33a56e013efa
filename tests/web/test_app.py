from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from a2lc.web.app import create_app
from a2lc.workspace import Workspace
from tests.conftest import OPEN_ROUND_BUDGET as BUDGET
from tests.web.answers import AppClient, answer_body


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def snapshot(
    ws_path: Path,
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
    with Workspace.open(ws_path) as ws:
        db = ws.connection
        return (
            db.execute("SELECT * FROM corrections ORDER BY id").fetchall(),
            db.execute("SELECT * FROM segments ORDER BY image_id, segment_id").fetchall(),
            db.execute(
                "SELECT round, image_id, segment_id, annotator FROM leases ORDER BY 1, 2, 3"
            ).fetchall(),
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(open_round: Path, clock: Clock) -> AppClient:
    return AppClient(create_app(open_round, lease_seconds=60, clock=clock))


def test_lease_answer_progress_and_undo(client: AppClient, open_round: Path) -> None:
    info = client.get("/api/info").json()
    assert info["round"] == 1
    assert [c["name"] for c in info["classes"]][:2] == ["sky", "building"]
    first = client.post("/api/lease", json={"annotator": "ann"}).json()
    query = first["query"]
    assert first["progress"] == {"answered": 0, "total": BUDGET, "leased": 1, "by_annotator": {}}
    # Asking again (a reload) gives the same query, not a new one.
    assert (
        client.post("/api/lease", json={"annotator": "ann"}).json()["query"]["segment_id"]
        == query["segment_id"]
    )
    new_label = (query["label"] + 1) % len(info["classes"])
    answer = answer_body(query, new_label, annotator="ann")
    reply = client.post("/api/answer", json=answer)
    assert reply.status_code == 200, reply.text
    assert reply.json()["progress"]["by_annotator"] == {"ann": 1}
    with Workspace.open(open_round) as ws:
        table = ws.segment_table(query["image_id"])
        row = int(np.flatnonzero(table.ids == query["segment_id"])[0])
        assert table.label[row] == new_label
        assert table.origin[row] == "manual"
    before_undo = snapshot(open_round)
    undone = client.post("/api/undo", json={"annotator": "ann"}).json()
    assert (undone["query"]["image_id"], undone["query"]["segment_id"]) == (
        query["image_id"],
        query["segment_id"],
    )
    assert undone["query"]["label"] == query["label"]
    assert undone["progress"]["answered"] == 0
    after = snapshot(open_round)
    assert after[0] == []
    with Workspace.open(open_round) as ws:
        table = ws.segment_table(query["image_id"])
        row = int(np.flatnonzero(table.ids == query["segment_id"])[0])
        assert table.label[row] == query["label"]
        assert table.origin[row] == "initial"
    assert before_undo != after
    # The undone query is leased back to "ann"; nothing more of theirs is left to undo.
    assert client.post("/api/undo", json={"annotator": "ann"}).json()["query"] is None


def test_every_answer_kind_and_the_round_continues(client: AppClient, open_round: Path) -> None:
    kinds = [None, 255, 0]
    answered = []
    for i in range(BUDGET):
        query = client.post("/api/lease", json={"annotator": "ann"}).json()["query"]
        label = kinds[i % 3]
        body = answer_body(query, label, annotator="ann")
        assert client.post("/api/answer", json=body).status_code == 200
        answered.append((query["image_id"], query["segment_id"], label, query["label"]))
    done = client.post("/api/lease", json={"annotator": "ann"}).json()
    assert done["query"] is None
    assert done["progress"]["answered"] == BUDGET
    with Workspace.open(open_round) as ws:
        rows = ws.connection.execute(
            "SELECT image_id, segment_id, before, after, relabel, annotator FROM corrections ORDER BY id"
        ).fetchall()
        assert ws.count_unanswered(1) == 0
    for (image_id, segment_id, label, current), row in zip(answered, rows, strict=True):
        assert row[:2] == (image_id, segment_id)
        assert row[3] == (current if label is None else label)
        assert row[4] == (label is not None)
        assert row[5] == "ann"


def test_two_annotators_get_different_queries_and_answer_concurrently(
    open_round: Path, clock: Clock
) -> None:
    client = AppClient(create_app(open_round, lease_seconds=60, clock=clock))
    a = client.post("/api/lease", json={"annotator": "a"}).json()["query"]
    b = client.post("/api/lease", json={"annotator": "b"}).json()["query"]
    assert (a["image_id"], a["segment_id"]) != (b["image_id"], b["segment_id"])
    # b may not answer a's query.
    stolen = answer_body(a, 0, annotator="b")
    reply = client.post("/api/answer", json=stolen)
    assert reply.status_code == 409
    assert "another annotator" in reply.json()["error"]
    results: dict[str, int] = {}

    def work(name: str) -> None:
        for _ in range(BUDGET):
            q = client.post("/api/lease", json={"annotator": name}).json()["query"]
            if q is None:
                return
            body = answer_body(q, 1, annotator=name)
            status = client.post("/api/answer", json=body).status_code
            assert status == 200
            results[name] = results.get(name, 0) + 1

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"] + results["b"] == BUDGET
    assert results["a"] >= 1
    assert results["b"] >= 1
    with Workspace.open(open_round) as ws:
        keys = ws.connection.execute(
            "SELECT image_id, segment_id FROM corrections WHERE round = 1 AND source = 'manual'"
        ).fetchall()
    assert len(keys) == len(set(keys)) == BUDGET


def test_abandoned_leases_expire(client: AppClient, clock: Clock) -> None:
    a = client.post("/api/lease", json={"annotator": "a"}).json()["query"]
    clock.now += 61
    b = client.post("/api/lease", json={"annotator": "b"}).json()["query"]
    assert (b["image_id"], b["segment_id"]) == (a["image_id"], a["segment_id"])
    late = {"annotator": "a", "image_id": a["image_id"], "segment_id": a["segment_id"], "label": 0}
    reply = client.post("/api/answer", json=late)
    assert reply.status_code == 409
    assert "another annotator" in reply.json()["error"]
    clock.now += 61
    reply = client.post("/api/answer", json={**late, "annotator": "b"})
    assert reply.status_code == 409
    assert "expired" in reply.json()["error"]


def test_bad_requests_are_refused_without_a_state_change(
    client: AppClient, open_round: Path
) -> None:
    query = client.post("/api/lease", json={"annotator": "ann"}).json()["query"]
    good = answer_body(query, 0, annotator="ann")
    before = snapshot(open_round)
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        ({**good, "label": 11}, 422, "class 11 is not"),
        ({**good, "label": -1}, 422, "class -1 is not"),
        ({**good, "label": "car"}, 400, "'label' must be"),
        ({**good, "label": True}, 400, "'label' must be"),
        ({k: v for k, v in good.items() if k != "label"}, 400, "missing field 'label'"),
        ({**good, "segment_id": "7"}, 400, "'segment_id' must be a int"),
        ({**good, "image_id": "../../etc/passwd"}, 404, "no image"),
        ({**good, "segment_id": 99999}, 404, "has no segment 99999"),
        ({**good, "annotator": ""}, 409, "give an annotator name"),
        ({**good, "annotator": "someone else"}, 409, "another annotator"),
        ({**good, "padding": "x" * 20_000}, 413, "too large"),
    ]
    for body, status, message in cases:
        if isinstance(body, bytes):
            reply = client.post(
                "/api/answer", content=body, headers={"Content-Type": "application/json"}
            )
        else:
            reply = client.post("/api/answer", json=body)
        assert reply.status_code == status, (body, reply.text)
        assert message in reply.json()["error"], (body, reply.text)
    # A segment that exists but is not a query of this round.
    with Workspace.open(open_round) as ws:
        queried = {(q.image_id, q.segment_id) for q in ws.queries(1)}
        image_id = query["image_id"]
        other = next(
            int(i) for i in ws.segment_table(image_id).ids if (image_id, int(i)) not in queried
        )
    reply = client.post("/api/answer", json={**good, "segment_id": other})
    assert reply.status_code == 409
    assert snapshot(open_round) == before
    assert client.post("/api/answer", json=good).status_code == 200
    # Answering twice is refused.
    reply = client.post("/api/answer", json=good)
    assert reply.status_code == 409


def test_only_workspace_images_are_served(client: AppClient) -> None:
    query = client.post("/api/lease", json={"annotator": "ann"}).json()["query"]
    for zoom in ("0", "1"):
        reply = client.get(f"/api/view/{query['image_id']}/{query['segment_id']}.png?zoom={zoom}")
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "image/png"
        assert reply.content[:8] == b"\x89PNG\r\n\x1a\n"
    for path in (
        "/api/view/..%2F..%2Fa2lc.sqlite/1.png",
        "/api/view/%2Fetc%2Fpasswd/1.png",
        "/static/../../a2lc.sqlite",
        "/static/..%2F..%2F..%2Fworkspace%2Fworkspace.py",
    ):
        reply = client.get(path)
        assert reply.status_code == 404, path
    assert client.get(f"/api/view/{query['image_id']}/x.png").status_code == 400
    assert (
        client.get(f"/api/view/{query['image_id']}/{query['segment_id']}.png?zoom=2").status_code
        == 400
    )
    page = client.get("/")
    assert page.status_code == 200
    assert "a2lc" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_no_open_round_is_a_clear_conflict(open_round: Path) -> None:
    from a2lc.cli import main

    assert main(["correct", "-w", str(open_round)]) == 0  # the simulated oracle closes round 1
    client = AppClient(create_app(open_round))
    reply = client.post("/api/lease", json={"annotator": "ann"})
    assert reply.status_code == 409
    assert "no open round" in reply.json()["error"]


def test_a_released_lease_is_free_at_once(client: AppClient) -> None:
    a = client.post("/api/lease", json={"annotator": "a"}).json()["query"]
    reply = client.post("/api/release", json={"annotator": "a"}).json()
    assert reply["released"] == 1
    assert reply["progress"]["leased"] == 0
    # No waiting for the lease to expire: the next annotator gets the same query now.
    b = client.post("/api/lease", json={"annotator": "b"}).json()["query"]
    assert (b["image_id"], b["segment_id"]) == (a["image_id"], a["segment_id"])
    assert client.post("/api/release", json={"annotator": "a"}).json()["released"] == 0
    assert client.post("/api/release", json={}).status_code == 400


def test_views_with_and_without_auto_exposure(client: AppClient) -> None:
    query = client.post("/api/lease", json={"annotator": "ann"}).json()["query"]
    url = f"/api/view/{query['image_id']}/{query['segment_id']}.png?zoom=0"
    auto = client.get(url)
    off = client.get(url + "&exposure=off")
    assert auto.status_code == off.status_code == 200
    assert client.get(url + "&exposure=bright").status_code == 400


def test_auto_exposure_brightens_a_dark_frame_and_leaves_a_flat_one() -> None:
    from a2lc.web.render import TARGET_MEDIAN, auto_exposure, segment_view

    rng = np.random.default_rng(0)
    # A dark frame whose pixels crowd the low end, as CamVid's do.
    dark = np.repeat(5 + 55 * rng.random((40, 50, 1)) ** 2, 3, axis=2).astype(np.uint8)
    lifted = auto_exposure(dark)
    assert lifted.shape == dark.shape
    assert lifted.dtype == np.uint8
    luminance = lifted.astype(float) @ [0.299, 0.587, 0.114]
    assert np.median(luminance) == pytest.approx(255 * TARGET_MEDIAN, abs=20)
    assert lifted.max() >= 250
    assert lifted.min() <= 5
    # Brighter pixels stay brighter (no tone inversion).
    order = np.argsort(dark.astype(float) @ [0.299, 0.587, 0.114], axis=None)
    assert (np.diff(luminance.ravel()[order]) >= 0).all()
    flat = np.full((10, 10, 3), 30, np.uint8)
    assert auto_exposure(flat) is flat
    mask = np.zeros((40, 50), bool)
    mask[10:20, 10:20] = True
    assert not np.array_equal(
        segment_view(dark, mask, zoom=False), segment_view(dark, mask, zoom=False, exposure=False)
    )
