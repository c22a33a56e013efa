"""a2lc as a Label Studio ML backend, in process (the real Label Studio: test_ls_server.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from a2lc.cli import main
from a2lc.interop.ls_backend import (
    MAX_PREDICT_TASKS,
    PASSWORD_VARIABLE,
    BackendAccess,
    create_backend,
)
from a2lc.interop.rle import decode_mask
from a2lc.workspace import Workspace
from tests.conftest import OPEN_ROUND_BUDGET


@pytest.fixture
def tasks(open_round: Path, tmp_path: Path) -> list[dict[str, Any]]:
    assert main(["export-queries", "-w", str(open_round), "--out", str(tmp_path / "ls")]) == 0
    loaded: list[dict[str, Any]] = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    return loaded


def annotation(task: dict[str, Any], labels: list[str], email: str = "ls@x.org") -> dict[str, Any]:
    region = json.loads(json.dumps(task["predictions"][0]["result"][0]))
    region["value"]["brushlabels"] = labels
    return {"id": 1, "result": [region], "completed_by": {"email": email}}


def test_health_setup_and_predictions_in_rank_order(
    open_round: Path, tasks: list[dict[str, Any]]
) -> None:
    with TestClient(create_backend(open_round)) as client:
        health = client.get("/health").json()
        assert health["status"] == "UP"
        assert health["unanswered"] == OPEN_ROUND_BUDGET
        assert client.post("/setup", json={"project": "1.1", "schema": "<View/>"}).json() == {
            "model_version": "a2lc-round-1"
        }
        bare = [{"id": n, "data": task["data"]} for n, task in enumerate(tasks)]
        results = client.post("/predict", json={"tasks": bare}).json()["results"]
        assert len(results) == len(tasks)
        scores = [r["score"] for r in results]
        assert scores == sorted(scores, reverse=True)  # tasks are exported in rank order
        assert scores[0] == 1.0
        with Workspace.open(open_round, read_only=True) as ws:
            for task, result in zip(tasks, results, strict=True):
                image_id, segment_id = task["data"]["image_id"], task["data"]["segment_id"]
                (region,) = result["result"]
                sample = ws.sample(image_id)
                mask = decode_mask(region["value"]["rle"], height=sample.height, width=sample.width)
                np.testing.assert_array_equal(mask, ws.read_segments(image_id) == segment_id)
                assert region == task["predictions"][0]["result"][0]
        # A task that is not an a2lc query gets no prediction.
        other = client.post("/predict", json={"tasks": [{"id": 9, "data": {"image": "x"}}]})
        assert other.json()["results"][0]["result"] == []
        assert client.post("/predict", json={"tasks": "all"}).status_code == 400


def test_webhook_records_each_answer_at_once_with_the_usual_validation(
    open_round: Path, tasks: list[dict[str, Any]]
) -> None:
    with Workspace.open(open_round, read_only=True) as ws:
        names = list(ws.class_names)
    first, second = tasks[0], tasks[1]
    current = first["predictions"][0]["result"][0]["value"]["brushlabels"][0]
    new_class = next(n for n in names if n != current)
    with TestClient(create_backend(open_round)) as client:

        def send(action: str, task: dict[str, Any], body: dict[str, Any]) -> Any:
            payload = {
                "action": action,
                "task": {"id": 1, "data": task["data"]},
                "annotation": body,
            }
            return client.post("/webhook", json=payload)

        reply = send("ANNOTATION_CREATED", first, annotation(first, [new_class]))
        assert reply.status_code == 200, reply.text
        assert reply.json()["unanswered"] == OPEN_ROUND_BUDGET - 1
        with Workspace.open(open_round, read_only=True) as ws:
            (row,) = [c for c in ws.corrections(1) if c["source"] == "manual"]
        assert names[row["after"]] == new_class
        assert row["annotator"] == "ls@x.org"
        # The same query again: the first answer of a round stays.
        again = send("ANNOTATION_UPDATED", first, annotation(first, ["void"]))
        assert again.status_code == 409
        assert "already answered" in again.json()["error"]
        # An unknown class is refused and records nothing.
        bad = send("ANNOTATION_CREATED", second, annotation(second, ["dragon"]))
        assert bad.status_code == 422
        assert "unknown label 'dragon'" in bad.json()["error"]
        # Actions without an answer are acknowledged.
        assert (
            client.post("/webhook", json={"action": "PROJECT_UPDATED"}).json()["status"]
            == "ignored"
        )
        invalid = client.post(
            "/webhook", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert invalid.status_code == 400
    with Workspace.open(open_round, read_only=True) as ws:
        assert ws.count_unanswered(1) == OPEN_ROUND_BUDGET - 1


def test_the_cli_refuses_without_an_open_round(
    open_round: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["correct", "-w", str(open_round)]) == 0
    assert main(["ls-backend", "-w", str(open_round)]) == 1
    assert "has no open round" in capsys.readouterr().err


def _answer_payload(task: dict[str, Any], label: str) -> dict[str, Any]:
    return {
        "action": "ANNOTATION_CREATED",
        "task": {"id": 1, "data": task["data"]},
        "annotation": annotation(task, [label]),
    }


def test_only_label_studio_gets_in(open_round: Path, tasks: list[dict[str, Any]]) -> None:
    """The attacks of issue #23, each refused with nothing recorded."""
    payload = json.dumps(_answer_payload(tasks[0], "void")).encode()
    typed = {"content-type": "application/json"}
    with TestClient(create_backend(open_round)) as client:
        attacks = {
            # Any web page may post a "simple" request: text/plain or a form.
            "text/plain from a page": (
                {"content-type": "text/plain", "origin": "http://evil.example"},
                403,
            ),
            "text/plain, no origin": ({"content-type": "text/plain"}, 415),
            "form": ({"content-type": "application/x-www-form-urlencoded"}, 415),
            "untyped": ({}, 415),
            "JSON from a page": ({**typed, "origin": "http://evil.example"}, 403),
            "JSON from a sandboxed page": ({**typed, "origin": "null"}, 403),
        }
        for name, (headers, status) in attacks.items():
            reply = client.post("/webhook", content=payload, headers=headers)
            assert reply.status_code == status, name
            assert "error" in reply.json(), name
        # Malformed predictions are 4xx with a message, never a crash.
        for task, wanted in (
            (
                {"id": 1, "data": {"image_id": tasks[0]["data"]["image_id"], "segment_id": [1]}},
                "segment_id",
            ),
            ({"id": 1, "data": {"image_id": {"a": 1}, "segment_id": 1}}, "image_id"),
            ({"id": 1, "data": {"image_id": "x", "segment_id": True}}, "segment_id"),
            ("task", "must be an object"),
        ):
            reply = client.post("/predict", json={"tasks": [task]})
            assert reply.status_code == 400, task
            assert wanted in reply.json()["error"]
        for body in ({"action": "ANNOTATION_CREATED", "task": [], "annotation": {}}, [1], "x"):
            assert 400 <= client.post("/webhook", json=body).status_code < 500
        many = [{"id": n, "data": tasks[0]["data"]} for n in range(MAX_PREDICT_TASKS + 1)]
        assert client.post("/predict", json={"tasks": many}).status_code == 413
        # The same answer from Label Studio's server (JSON, no Origin) is recorded.
        assert client.post("/webhook", content=payload, headers=typed).status_code == 200
    with Workspace.open(open_round, read_only=True) as ws:
        assert len([c for c in ws.corrections(1) if c["source"] == "manual"]) == 1


def test_basic_authentication_and_allowed_origins(
    open_round: Path, tasks: list[dict[str, Any]]
) -> None:
    access = BackendAccess(
        origins=frozenset({"http://localhost:8080"}), basic_auth=("label-studio", "s3cret")
    )
    payload = _answer_payload(tasks[0], "void")
    with TestClient(create_backend(open_round, access=access)) as client:
        assert client.get("/health").status_code == 401
        assert client.get("/health").headers["www-authenticate"].startswith("Basic")
        wrong = client.post("/webhook", json=payload, auth=("label-studio", "guess"))
        assert wrong.status_code == 401
        assert (
            client.post("/webhook", json=payload, headers={"authorization": "Basic !!"}).status_code
            == 401
        )
        good = ("label-studio", "s3cret")
        assert client.get("/health", auth=good).json()["status"] == "UP"
        evil = client.post(
            "/webhook", json=payload, auth=good, headers={"origin": "http://evil.example"}
        )
        assert evil.status_code == 403
        allowed = client.post(
            "/webhook", json=payload, auth=good, headers={"origin": "http://localhost:8080"}
        )
        assert allowed.status_code == 200, allowed.text
    with pytest.raises(ValueError, match="user name"):
        BackendAccess(basic_auth=("a:b", "x"))


def test_health_answers_while_a_request_holds_the_workspace(open_round: Path) -> None:
    """/health reads through its own connection: a long request never holds it up."""
    app = create_backend(open_round)
    with TestClient(app) as client:
        with app.state.lock:  # as a /predict or an answer would, in another thread
            reply = client.get("/health")
        assert reply.status_code == 200
        assert reply.json()["unanswered"] == OPEN_ROUND_BUDGET


def test_listening_beyond_loopback_needs_authentication(
    open_round: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    common = ["ls-backend", "-w", str(open_round), "--host", "10.0.0.5"]
    assert main(common) == 1
    assert "--basic-auth-user NAME" in capsys.readouterr().err
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)
    assert main([*common, "--basic-auth-user", "ls"]) == 1
    assert PASSWORD_VARIABLE in capsys.readouterr().err
    assert main([*common, "--allow-origin", "evil.example", "--no-auth"]) == 1
    assert "scheme://host" in capsys.readouterr().err
