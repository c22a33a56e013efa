"""The backend runs the rounds for a Label Studio project (a fake project here; the real
Label Studio server: test_ls_server.py)."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from a2lc.cli import main
from a2lc.errors import A2LCError
from a2lc.interop.ls_api import LabelStudioAPI, LabelStudioError
from a2lc.interop.ls_loop import LoopSettings, RoundLoop
from a2lc.rounds import run_rounds, stored_run_config
from a2lc.workspace import Workspace
from tests.test_rounds import config, make_workspace
from tests.web.test_loop import oracle_answers


class FakeProject:
    """What the loop needs of Label Studio's API, in memory."""

    def __init__(self) -> None:
        self.tasks_: list[dict[str, Any]] = []
        self.storages: list[str] = []
        self.imports = 0

    def tasks(self, project: int) -> list[dict[str, Any]]:
        return json.loads(json.dumps(self.tasks_))

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> int:
        self.imports += 1
        for task in tasks:
            self.tasks_.append({**json.loads(json.dumps(task)), "id": len(self.tasks_) + 1})
        return len(tasks)

    def local_storages(self, project: int) -> list[dict[str, Any]]:
        return [{"path": p} for p in self.storages]

    def add_local_storage(self, project: int, path: str) -> None:
        self.storages.append(path)

    def annotate(self, answers: dict[tuple[str, int], int | None], names: list[str]) -> None:
        """Answer the tasks of ``answers`` in the editor: the pre-filled region, relabelled."""
        for task in self.tasks_:
            key = (task["data"]["image_id"], task["data"]["segment_id"])
            if key not in answers or task.get("annotations"):
                continue
            region = json.loads(json.dumps(task["predictions"][0]["result"][0]))
            answer = answers[key]
            if answer is not None:
                region["value"]["brushlabels"] = ["void" if answer == 255 else names[answer]]
            task["annotations"] = [
                {"id": task["id"], "result": [region], "completed_by": {"email": "p@x.org"}}
            ]


def _loop(ws: Workspace, project: FakeProject) -> RoundLoop:
    settings = LoopSettings(api=project, project=1)  # type: ignore[arg-type]
    return RoundLoop(ws, threading.Lock(), settings)


def test_two_rounds_through_label_studio_each_answer_once_across_a_restart(
    tmp_path: Path,
) -> None:
    project = FakeProject()
    with make_workspace(tmp_path) as ws:
        run_config = config(rounds=2, oracle="human")
        assert run_rounds(ws, run_config, show_progress=False).waiting_round == 1
        names = list(ws.class_names)
        expected = {1: oracle_answers(ws, 1)}
        loop = _loop(ws, project)
        loop.step()  # round 1's queries go into the project, with a Local Storage
        assert len(project.tasks_) == len(expected[1]) == 20
        assert project.storages
        assert all(Path(p).is_dir() for p in project.storages)
        assert {t["data"]["round"] for t in project.tasks_} == {1}
        first_half = dict(list(expected[1].items())[:10])
        project.annotate(first_half, names)
        loop.step()  # the answers given in Label Studio reach the workspace
        assert ws.count_unanswered(1) == 10
        assert project.imports == 1  # nothing pushed twice
        # The backend is killed; the rest is answered while it is down; it starts again.
        del loop
        project.annotate(expected[1], names)
        restarted = _loop(ws, project)
        restarted.step()  # catches up, closes round 1, runs round 2, pushes its tasks
        assert [r.status for r in ws.rounds()] == ["closed", "querying"]
        assert restarted.state.startswith("round 2: 20 queries open")
        expected[2] = oracle_answers(ws, 2)
        assert {t["data"]["round"] for t in project.tasks_} == {1, 2}
        restarted.step()
        assert len(project.tasks_) == 40  # still each query once
        project.annotate(expected[2], names)
        restarted.step()  # round 2 complete: closed, and the run is finished
        assert [r.status for r in ws.rounds()] == ["closed", "closed"]
        assert restarted.state.startswith("finished")
        restarted.step()  # idle
        for r in (1, 2):
            manual = [c for c in ws.corrections(r) if c["source"] == "manual"]
            keys = [(c["image_id"], c["segment_id"]) for c in manual]
            assert len(keys) == len(set(keys)) == 20  # each answer exactly once
            got = {
                (c["image_id"], c["segment_id"]): c["after"] if c["relabel"] else None
                for c in manual
            }
            assert got == expected[r]


def test_a_malformed_task_does_not_stop_the_others(tmp_path: Path) -> None:
    project = FakeProject()
    with make_workspace(tmp_path) as ws:
        run_rounds(ws, config(rounds=1, oracle="human"), show_progress=False)
        names = list(ws.class_names)
        loop = _loop(ws, project)
        loop.step()
        answers = oracle_answers(ws, 1)
        project.annotate(answers, names)
        project.tasks_[0]["annotations"][0]["result"][0]["value"]["brushlabels"] = ["dragon"]
        loop.step()
        assert ws.count_unanswered(1) == 1  # every other answer recorded
        assert loop.state.startswith("round 1: 1 queries open")


def test_the_stored_options_read_back(tmp_path: Path) -> None:
    with make_workspace(tmp_path) as ws:
        assert stored_run_config(ws) is None
        wanted = config(rounds=3, oracle="human", strategy="alc")
        run_rounds(ws, wanted, show_progress=False)
        # As the run stored them: the model's class count filled in from the workspace.
        model = replace(wanted.model, num_classes=ws.num_classes)
        assert stored_run_config(ws) == replace(wanted, model=model)


def test_the_cli_needs_a_run_and_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with make_workspace(tmp_path):
        pass
    workspace = str(tmp_path / "ws")
    base = ["ls-backend", "-w", workspace, "--label-studio", "http://127.0.0.1:9", "--project", "1"]
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    assert main(base) == 1
    assert "LABEL_STUDIO_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "abc")
    assert main(base) == 1
    assert "has no run yet" in capsys.readouterr().err
    assert main(["ls-backend", "-w", workspace, "--project", "1"]) == 1
    assert "go together" in capsys.readouterr().err


def test_the_api_client_says_what_went_wrong() -> None:
    with pytest.raises(A2LCError, match="expected http"):
        LabelStudioAPI("localhost:8080", "abc")
    api = LabelStudioAPI("http://127.0.0.1:9", "abc", timeout=2)  # nothing listens on port 9
    with pytest.raises(LabelStudioError, match="unreachable"):
        api.project(1)
