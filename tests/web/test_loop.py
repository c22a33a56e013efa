"""Answers given in the web app continue the correction loop exactly as the simulated oracle's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from a2lc.correction.oracle import simulate_annotator
from a2lc.rounds import run_rounds
from a2lc.web.app import create_app
from a2lc.workspace import Workspace
from tests.test_rounds import config, make_workspace
from tests.web.answers import AppClient, answer_body


def oracle_answers(ws: Workspace, round_index: int) -> dict[tuple[str, int], int | None]:
    answers: dict[tuple[str, int], int | None] = {}
    for query in ws.unanswered(round_index):
        segments = ws.read_segments(query.image_id)
        labels = ws.read_labels(query.image_id, segments=segments)
        result = simulate_annotator(
            labels, segments, ws.read_ground_truth(query.image_id), [query.segment_id]
        )
        answers[(query.image_id, query.segment_id)] = (
            int(result.after[0]) if result.relabel[0] else None
        )
    return answers


def without_timings(metrics: dict[int, dict[str, float]]) -> dict[int, dict[str, float]]:
    return {
        r: {k: v for k, v in m.items() if not k.startswith("seconds/")} for r, m in metrics.items()
    }


def test_web_answers_continue_the_round_like_the_oracle(tmp_path: Path) -> None:
    with make_workspace(tmp_path / "simulated") as ws:
        simulated = run_rounds(ws, config(rounds=1), show_progress=False).metrics
        simulated_corrections = [
            (c["image_id"], c["segment_id"], c["before"], c["after"], c["source"])
            for c in ws.corrections()
        ]
        simulated_labels = {s.id: ws.read_labels(s.id) for s in ws.samples}

    human = tmp_path / "human"
    with make_workspace(human) as ws:
        waiting = run_rounds(ws, config(rounds=1, oracle="human"), show_progress=False)
        assert waiting.waiting_round == 1
        answers = oracle_answers(ws, 1)
    client = AppClient(create_app(human / "ws"))
    names = ["ann", "bob"]
    for i in range(len(answers)):
        name = names[i % 2]
        query = client.post("/api/lease", json={"annotator": name}).json()["query"]
        label = answers[(query["image_id"], query["segment_id"])]
        body = answer_body(query, label, annotator=name)
        assert client.post("/api/answer", json=body).status_code == 200
    assert client.post("/api/lease", json={"annotator": "ann"}).json()["query"] is None
    client.close()

    with Workspace.open(human / "ws") as ws:
        finished = run_rounds(ws, config(rounds=1, oracle="human"), show_progress=False)
        assert finished.finished
        assert without_timings(finished.metrics) == without_timings(simulated)
        corrections = [
            (c["image_id"], c["segment_id"], c["before"], c["after"], c["source"])
            for c in ws.corrections()
        ]
        assert sorted(corrections) == sorted(simulated_corrections)
        for sample in ws.samples:
            np.testing.assert_array_equal(ws.read_labels(sample.id), simulated_labels[sample.id])


def test_a_restarted_server_continues_where_it_stopped(open_round: Path) -> None:
    first = AppClient(create_app(open_round))
    done = []
    for _ in range(2):
        q = first.post("/api/lease", json={"annotator": "ann"}).json()["query"]
        body = answer_body(q, 0, annotator="ann")
        assert first.post("/api/answer", json=body).status_code == 200
        done.append((q["image_id"], q["segment_id"]))
    held = first.post("/api/lease", json={"annotator": "ann"}).json()["query"]
    browser = first.sessions  # what the page keeps (its session id stays valid)
    del first  # the server goes away without any shutdown

    second = AppClient(create_app(open_round))
    second.sessions = browser
    again = second.post("/api/lease", json={"annotator": "ann"}).json()
    assert again["progress"]["answered"] == 2
    assert (again["query"]["image_id"], again["query"]["segment_id"]) == (
        held["image_id"],
        held["segment_id"],
    )
    assert (held["image_id"], held["segment_id"]) not in done


def test_two_rounds_of_the_default_answered_in_the_app_end_as_the_oracle(tmp_path: Path) -> None:
    """The default strategy learns from the answers: two rounds answered only through the
    app's API (two annotators, in the app's order) end in the simulated oracle's state."""
    from tests.test_default_strategy import default_config, final_state

    with make_workspace(tmp_path / "simulated") as ws:
        assert run_rounds(ws, default_config("gt"), show_progress=False).finished
    want = final_state(tmp_path / "simulated" / "ws")

    human = tmp_path / "human" / "ws"
    with make_workspace(tmp_path / "human"):
        pass
    while True:
        with Workspace.open(human) as ws:
            result = run_rounds(ws, default_config("human"), show_progress=False)
            if result.finished:
                break
            answers = oracle_answers(ws, result.waiting_round)  # type: ignore[arg-type]
        client = AppClient(create_app(human))  # a new browser each round: new names
        names = [f"ann{result.waiting_round}", f"bob{result.waiting_round}"]
        for i in range(len(answers)):
            name = names[i % 2]
            query = client.post("/api/lease", json={"annotator": name}).json()["query"]
            body = answer_body(
                query, answers[(query["image_id"], query["segment_id"])], annotator=name
            )
            assert client.post("/api/answer", json=body).status_code == 200
        client.close()
    got = final_state(human)
    assert got == want | {"metrics": got["metrics"]}
    assert without_timings(got["metrics"]) == without_timings(want["metrics"])
