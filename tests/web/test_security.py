"""The annotation app trusts no one: token, Host, Origin, content type, owned names, body size.

Every refused request leaves the workspace exactly as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from a2lc.web.access import TOKEN_COOKIE, TOKEN_FILE, TOKEN_META, allowed_hosts, workspace_token
from a2lc.web.app import create_app
from a2lc.workspace import Workspace
from tests.web.answers import answer_body
from tests.web.test_app import snapshot

SESSIONS: dict[str, str] = {}
"""Two browsers' sessions, minted by the app under test (the fixture fills them)."""
SESSION_A, SESSION_B = "a", "b"


@pytest.fixture
def app_and_token(open_round: Path) -> tuple[TestClient, str]:
    app = create_app(open_round, lease_seconds=60, hosts=allowed_hosts("127.0.0.1", 8000))
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    token = workspace_token(app.state.workspace)
    for name in (SESSION_A, SESSION_B):
        reply = client.post("/api/session", json={}, headers={"X-A2LC-Token": token})
        SESSIONS[name] = reply.json()["session"]
    return client, token


def headers(token: str, session: str = SESSION_A, **extra: str) -> dict[str, str]:
    return {"X-A2LC-Token": token, "X-A2LC-Session": SESSIONS[session], **extra}


def test_every_api_route_needs_the_token(
    app_and_token: tuple[TestClient, str], open_round: Path
) -> None:
    client, token = app_and_token
    before = snapshot(open_round)
    assert client.get("/api/info").status_code == 401
    assert client.get("/api/info", headers={"X-A2LC-Token": "wrong"}).status_code == 401
    assert client.get("/api/progress").status_code == 401
    assert client.post("/api/lease", json={"annotator": "alice"}).status_code == 401
    # Never in a URL (issue #24): the query parameter opens nothing.
    assert client.get(f"/api/info?token={token}").status_code == 401
    reply = client.post(
        f"/api/lease?token={token}",
        json={"annotator": "alice"},
        headers={"X-A2LC-Session": SESSIONS[SESSION_A]},
    )
    assert reply.status_code == 401
    assert snapshot(open_round) == before
    assert (
        client.post("/api/lease", json={"annotator": "alice"}, headers=headers(token)).status_code
        == 200
    )


def test_cross_site_requests_are_refused(
    app_and_token: tuple[TestClient, str], open_round: Path
) -> None:
    client, token = app_and_token
    before = snapshot(open_round)
    # A form post from another site: text/plain, evil origin.
    plain = client.post(
        "/api/lease",
        content=b'{"annotator": "alice"}',
        headers=headers(token, **{"Content-Type": "text/plain"}),
    )
    assert plain.status_code == 415
    evil = client.post(
        "/api/lease",
        json={"annotator": "alice"},
        headers=headers(token, Origin="http://evil.example"),
    )
    assert evil.status_code == 403
    # DNS rebinding: the right token cannot help a page served under another name.
    rebound = client.get("/api/info", headers=headers(token, Host="evil.example"))
    assert rebound.status_code == 403
    assert snapshot(open_round) == before
    same_origin = client.post(
        "/api/lease",
        json={"annotator": "alice"},
        headers=headers(token, Origin="http://127.0.0.1:8000"),
    )
    assert same_origin.status_code == 200


def test_nobody_answers_or_undoes_as_another_annotator(
    app_and_token: tuple[TestClient, str], open_round: Path
) -> None:
    client, token = app_and_token
    query = client.post("/api/lease", json={"annotator": "alice"}, headers=headers(token)).json()[
        "query"
    ]
    answered = client.post(
        "/api/answer", json=answer_body(query, None, annotator="alice"), headers=headers(token)
    )
    assert answered.status_code == 200
    before = snapshot(open_round)
    stolen = client.post(
        "/api/undo", json={"annotator": "alice"}, headers=headers(token, SESSION_B)
    )
    assert stolen.status_code == 403
    assert "another browser" in stolen.json()["error"]
    assert (
        client.post(
            "/api/lease", json={"annotator": "alice"}, headers=headers(token, SESSION_B)
        ).status_code
        == 403
    )
    assert snapshot(open_round) == before
    # alice herself can undo.
    assert (
        client.post("/api/undo", json={"annotator": "alice"}, headers=headers(token)).status_code
        == 200
    )
    assert (
        client.post(
            "/api/undo", json={"annotator": "alice"}, headers={"X-A2LC-Token": token}
        ).status_code
        == 400
    )


def test_another_spelling_of_a_name_is_the_same_annotator(
    app_and_token: tuple[TestClient, str], open_round: Path
) -> None:
    """Issue #24: ownership is checked on the name the desk records, not the raw one."""
    client, token = app_and_token
    query = client.post("/api/lease", json={"annotator": "alice"}, headers=headers(token)).json()[
        "query"
    ]
    assert (
        client.post(
            "/api/answer", json=answer_body(query, None, annotator="alice"), headers=headers(token)
        ).status_code
        == 200
    )
    before = snapshot(open_round)
    for spelling in (" alice", "alice ", "alice\t", "\u00a0alice", "ａｌｉｃｅ", "alice\u3000"):
        for path, body in (
            ("/api/undo", {"annotator": spelling}),
            ("/api/lease", {"annotator": spelling}),
            ("/api/answer", answer_body(query, 255, annotator=spelling)),
        ):
            reply = client.post(path, json=body, headers=headers(token, SESSION_B))
            assert reply.status_code == 403, (path, spelling)
    assert snapshot(open_round) == before  # nothing recorded or removed under alice's name
    # An invalid name is refused before anything is stored.
    for bad in ("", "   ", "x" * 15_000, "a\u0000b", 7):
        reply = client.post(
            "/api/lease", json={"annotator": bad}, headers=headers(token, SESSION_B)
        )
        assert reply.status_code == 409
        assert "annotator name" in reply.json()["error"]
    with Workspace.open(open_round, read_only=True) as ws:
        owners = ws.connection.execute("SELECT annotator FROM annotator_sessions").fetchall()
    assert owners == [("alice",)]


def test_one_browser_holds_one_lease_and_keeps_its_names(
    app_and_token: tuple[TestClient, str], open_round: Path
) -> None:
    client, token = app_and_token
    for i in range(40):  # one client cycling through names never holds more than one lease
        reply = client.post("/api/lease", json={"annotator": f"name{i}"}, headers=headers(token))
        assert reply.status_code == 200
        assert reply.json()["progress"]["leased"] == 1
    # Back to a name it used before: still one lease.
    again = client.post("/api/lease", json={"annotator": "name0"}, headers=headers(token))
    assert again.json()["progress"]["leased"] == 1
    # Issue #24: a name it moved away from stays its own (else anyone could claim it
    # and undo its answers).
    other = client.post(
        "/api/lease", json={"annotator": "name0"}, headers=headers(token, SESSION_B)
    )
    assert other.status_code == 403


def test_a_name_moves_to_another_browser_only_with_its_resume_code(
    app_and_token: tuple[TestClient, str], open_round: Path
) -> None:
    """Issue #24: after alice switches name, nobody claims "alice" and undoes her answers;
    alice herself continues in another browser with the code only her browser is shown."""
    client, token = app_and_token
    first = client.post("/api/lease", json={"annotator": "alice"}, headers=headers(token)).json()
    code = first["resume_code"]
    assert (
        client.post(
            "/api/answer",
            json=answer_body(first["query"], None, annotator="alice"),
            headers=headers(token),
        ).status_code
        == 200
    )
    held = client.post("/api/lease", json={"annotator": "bob"}, headers=headers(token))
    assert held.status_code == 200  # alice's browser moves on under another name
    before = snapshot(open_round)
    for body in (
        {"annotator": "alice"},
        {"annotator": "alice", "takeover": True},
        {"annotator": "alice", "resume": "AAAA-AAAA" if code != "AAAA-AAAA" else "BBBB-BBBB"},
        {"annotator": "alice", "resume": 12345678},
        {"annotator": "alice", "resume": ""},
    ):
        for path in ("/api/undo", "/api/lease"):
            reply = client.post(path, json=body, headers=headers(token, SESSION_B))
            assert reply.status_code == 403, (path, body)
    assert snapshot(open_round) == before  # nothing removed or recorded under alice's name
    # Other browsers are not shown the code of a name they do not own.
    bob = client.post("/api/lease", json={"annotator": "carol"}, headers=headers(token, SESSION_B))
    assert bob.json()["resume_code"] != code
    # With the code (typed any case, without the dash), the name moves; the old
    # browser is refused from then on, and the code it was shown no longer works.
    moved = client.post(
        "/api/undo",
        json={"annotator": "alice", "resume": code.replace("-", "").lower()},
        headers=headers(token, SESSION_B),
    )
    assert moved.status_code == 200
    assert moved.json()["query"]["segment_id"] == first["query"]["segment_id"]
    back = client.post(
        "/api/lease", json={"annotator": "alice", "resume": code}, headers=headers(token)
    )
    assert back.status_code == 403


def test_a_large_body_is_refused_before_it_is_read(
    app_and_token: tuple[TestClient, str], open_round: Path
) -> None:
    client, token = app_and_token
    before = snapshot(open_round)
    big = b'{"annotator": "' + b"x" * 50_000_000 + b'"}'
    reply = client.post(
        "/api/lease", content=big, headers=headers(token, **{"Content-Type": "application/json"})
    )
    assert reply.status_code == 413

    def chunks():  # no Content-Length: refused while streaming
        yield b'{"annotator": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}'

    streamed = client.post(
        "/api/lease",
        content=chunks(),
        headers=headers(token, **{"Content-Type": "application/json"}),
    )
    assert streamed.status_code == 413
    assert snapshot(open_round) == before


def test_allowed_hosts() -> None:
    assert allowed_hosts("127.0.0.1", 8000) >= {"127.0.0.1:8000", "localhost:8000"}
    assert "evil.example:8000" not in allowed_hosts("127.0.0.1", 8000)
    assert allowed_hosts("0.0.0.0", 8000, ("lab.example",)) == {"lab.example:8000"}
    assert allowed_hosts("192.168.1.5", 80) == {"192.168.1.5:80", "192.168.1.5"}


def test_cli_refuses_a_wildcard_address_without_a_name(open_round: Path) -> None:
    from a2lc.cli import main

    assert main(["annotate", "-w", str(open_round), "--host", "0.0.0.0"]) == 1


def test_the_token_stays_out_of_urls_logs_and_the_database(
    app_and_token: tuple[TestClient, str], open_round: Path
) -> None:
    """Issue #24: a cookie for images, no-referrer, a hash in the database, a 0600 file."""
    client, token = app_and_token
    reply = client.get("/api/info", headers={"X-A2LC-Token": token})
    assert reply.headers["referrer-policy"] == "no-referrer"
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}={token};")
    for part in ("HttpOnly", "SameSite=Strict", "Path=/api/view"):
        assert part in cookie
    assert client.get("/").headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in client.get("/api/info").headers  # no token, no cookie
    lease = client.post("/api/lease", json={"annotator": "alice"}, headers=headers(token)).json()
    view = f"/api/view/{lease['query']['image_id']}/{lease['query']['segment_id']}.png"
    fresh = TestClient(client.app, base_url="http://127.0.0.1:8000")
    assert fresh.get(view).status_code == 401
    fresh.cookies.set(TOKEN_COOKIE, token)
    assert fresh.get(view).status_code == 200  # an <img> needs only the cookie
    assert fresh.get("/api/info").status_code == 200  # GETs read; nothing changes
    refused = fresh.post(
        "/api/lease", json={"annotator": "bob"}, headers={"X-A2LC-Session": SESSIONS[SESSION_B]}
    )
    assert refused.status_code == 401  # a state change needs the header
    path = open_round / TOKEN_FILE
    assert path.read_text().strip() == token
    assert (path.stat().st_mode & 0o777) == 0o600
    database = (open_round / "a2lc.sqlite").read_bytes()
    wal = open_round / "a2lc.sqlite-wal"
    stored = database + (wal.read_bytes() if wal.exists() else b"")
    assert token.encode() not in stored


def test_a_new_token_replaces_the_old_one(
    open_round: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from a2lc.workspace import Workspace as Ws

    with Ws.open(open_round) as ws:
        ws.set_meta({TOKEN_META: "a-token-an-older-a2lc-stored-in-plain-text"})
        assert workspace_token(ws) == "a-token-an-older-a2lc-stored-in-plain-text"  # kept
        assert not ws.meta(TOKEN_META)  # and moved out of the database
        first = workspace_token(ws)
        assert workspace_token(ws) == first  # the same at every start
        second = workspace_token(ws, new=True)
    assert second != first
    app = create_app(open_round, hosts=allowed_hosts("127.0.0.1", 8000))
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    assert client.get("/api/info", headers={"X-A2LC-Token": first}).status_code == 401
    assert client.get("/api/info", headers={"X-A2LC-Token": second}).status_code == 200


def test_a_new_token_frees_the_names_of_the_old_sessions(
    app_and_token: tuple[TestClient, str], open_round: Path
) -> None:
    """The sessions minted under the old token are void; their names must not stay locked."""
    from a2lc.workspace import Workspace as Ws

    client, token = app_and_token
    assert (
        client.post("/api/lease", json={"annotator": "alice"}, headers=headers(token)).status_code
        == 200
    )
    with Ws.open(open_round) as ws:
        second = workspace_token(ws, new=True)
    app = create_app(open_round, hosts=allowed_hosts("127.0.0.1", 8000))
    fresh = TestClient(app, base_url="http://127.0.0.1:8000")
    session = fresh.post("/api/session", json={}, headers={"X-A2LC-Token": second}).json()[
        "session"
    ]
    again = fresh.post(
        "/api/lease",
        json={"annotator": "alice"},
        headers={"X-A2LC-Token": second, "X-A2LC-Session": session},
    )
    assert again.status_code == 200


def test_sessions_are_minted_by_the_app(
    app_and_token: tuple[TestClient, str], open_round: Path
) -> None:
    """Issue #24: a made-up session id holds nothing; a minted one comes back as it is."""
    client, token = app_and_token
    before = snapshot(open_round)
    for made_up in ("x" * 32, SESSIONS[SESSION_A] + "0", "nonce.0123", ""):
        reply = client.post(
            "/api/lease",
            json={"annotator": "hoarder"},
            headers={"X-A2LC-Token": token, "X-A2LC-Session": made_up},
        )
        assert reply.status_code == 400
        assert "/api/session" in reply.json()["error"]
    assert snapshot(open_round) == before
    kept = client.post(
        "/api/session", json={"session": SESSIONS[SESSION_A]}, headers=headers(token)
    )
    assert kept.json()["session"] == SESSIONS[SESSION_A]
    fresh = client.post("/api/session", json={"session": "made.up"}, headers=headers(token))
    assert fresh.json()["session"] not in (SESSIONS[SESSION_A], "made.up")
    with Workspace.open(open_round, read_only=True) as ws:
        assert ws.connection.execute("SELECT COUNT(*) FROM annotator_sessions").fetchone()[0] == 0
