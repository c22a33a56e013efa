"""a2lc as a Label Studio ML backend, in process (the real Label Studio: test_ls_server.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from a2lc.cli import main
from a2lc.interop.ls_backend import create_backend
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
        assert client.post("/webhook", content=b"{nope").status_code == 400
    with Workspace.open(open_round, read_only=True) as ws:
        assert ws.count_unanswered(1) == OPEN_ROUND_BUDGET - 1


def test_the_cli_refuses_without_an_open_round(
    open_round: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["correct", "-w", str(open_round)]) == 0
    assert main(["ls-backend", "-w", str(open_round)]) == 1
    assert "has no open round" in capsys.readouterr().err
