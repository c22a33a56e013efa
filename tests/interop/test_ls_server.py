"""End to end with a real Label Studio server (its own virtual environment from `.ci/tools`).

The test starts Label Studio and `a2lc ls-backend` on 127.0.0.1, connects the backend
as the project's model, lets Label Studio fetch the predictions, annotates every
task through Label Studio's API and checks that each answer reached the workspace
at once, then continues the round with the loop. Without Label Studio it fails,
never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from a2lc.cli import main
from a2lc.interop.label_studio import labeling_config
from a2lc.rounds import run_rounds
from a2lc.workspace import Workspace
from tests.interop.test_real_tools import TOOLS
from tests.test_rounds import config, make_workspace
from tests.web.test_e2e import free_port
from tests.web.test_loop import oracle_answers

EMAIL, PASSWORD = "annotator@a2lc.test", "a2lc-test-password"
START_TIMEOUT_S = 600.0
"""Label Studio's first start migrates its database: minutes on a busy 2-core machine."""


def wait_for(url: str, process: subprocess.Popen[bytes], *, what: str, log: IO[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"{what} exited: {log.read().decode(errors='replace')[-3000:]}")
        time.sleep(1)
    pytest.fail(f"{what} did not answer {url} within {START_TIMEOUT_S:.0f} s")


@contextlib.contextmanager
def running(argv: list[str], *, env: dict[str, str], url: str, what: str) -> Iterator[None]:
    # Output to a file, never a pipe nobody reads: a full pipe would stop the server.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for(url, process, what=what, log=log)
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def label_studio(tmp_path: Path, port: int) -> tuple[list[str], dict[str, str]]:
    program = TOOLS / "label-studio" / "bin" / "label-studio"
    if not program.is_file():
        pytest.fail(f"no Label Studio at {program}: run `bash .ci/tools`")
    env = {
        **os.environ,
        "LABEL_STUDIO_USERNAME": EMAIL,
        "LABEL_STUDIO_PASSWORD": PASSWORD,
        "LABEL_STUDIO_BASE_DATA_DIR": str(tmp_path / "ls-data"),
        # The backend runs on 127.0.0.1, which Label Studio blocks by default (SSRF).
        "SSRF_PROTECTION_ENABLED": "false",
        "USE_DEFAULT_BANNED_SUBNETS": "false",
    }
    argv = [str(program), "start", "--no-browser", "--port", str(port)]
    return [*argv, "--data-dir", str(tmp_path / "ls-data")], env


def login(base: str) -> tuple[httpx.Client, dict[str, str]]:
    """A session as Label Studio's own page has one (its legacy API tokens are off)."""
    client = httpx.Client(base_url=base, timeout=120, follow_redirects=True)
    client.get("/user/login/")
    reply = client.post(
        "/user/login/",
        data={
            "email": EMAIL,
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies.get("csrftoken") or "",
        },
        headers={"Referer": f"{base}/user/login/"},
    )
    assert reply.status_code == 200
    headers = {"X-CSRFToken": client.cookies.get("csrftoken") or "", "Referer": base}
    return client, headers


def test_label_studio_with_a2lc_as_its_ml_backend(tmp_path: Path) -> None:
    with make_workspace(tmp_path / "human") as ws:
        waiting = run_rounds(ws, config(rounds=1, oracle="human"), show_progress=False)
        assert waiting.waiting_round == 1
        expected = oracle_answers(ws, 1)
        names = list(ws.class_names)
        ranks = {(q.image_id, q.segment_id): q.rank for q in ws.queries(1)}
    workspace = tmp_path / "human" / "ws"
    assert main(["export-queries", "-w", str(workspace), "--out", str(tmp_path / "ls")]) == 0
    exported: list[dict[str, Any]] = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    labeling_config = (tmp_path / "ls" / "labeling_config.xml").read_text()

    ls_port, backend_port = free_port(), free_port()
    base, backend = f"http://127.0.0.1:{ls_port}", f"http://127.0.0.1:{backend_port}"
    ls_argv, ls_env = label_studio(tmp_path, ls_port)
    backend_argv = [sys.executable, "-m", "a2lc", "ls-backend", "-w", str(workspace)]
    with (
        running(ls_argv, env=ls_env, url=f"{base}/health", what="Label Studio"),
        running(
            [*backend_argv, "--port", str(backend_port)],
            env=dict(os.environ),
            url=f"{backend}/health",
            what="a2lc ls-backend",
        ),
    ):
        client, headers = login(base)
        me = client.get("/api/current-user/whoami").json()
        assert me["email"] == EMAIL
        project = client.post(
            "/api/projects",
            json={"title": "a2lc", "label_config": labeling_config},
            headers=headers,
        ).json()["id"]
        bare = [{"data": t["data"], "meta": t["meta"]} for t in exported]  # no predictions
        assert client.post(f"/api/projects/{project}/import", json=bare, headers=headers).is_success
        connected = client.post(
            "/api/ml", json={"project": project, "url": backend, "title": "a2lc"}, headers=headers
        )
        assert connected.status_code == 201, connected.text
        assert connected.json()["readable_state"] == "Connected"
        fetched = client.post(
            f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
            json={"selectedItems": {"all": True, "excluded": []}},
            headers=headers,
        )
        assert fetched.is_success, fetched.text
        listing = client.get(f"/api/tasks?project={project}&fields=all&page_size=1000").json()
        tasks = listing["tasks"] if isinstance(listing, dict) else listing
        assert len(tasks) == len(exported)
        # Pre-filled with the current class, and ordered by a2lc's rank through the scores.
        by_key = {(t["data"]["image_id"], t["data"]["segment_id"]): t for t in exported}
        scored = []
        for task in tasks:
            key = (task["data"]["image_id"], task["data"]["segment_id"])
            (prediction,) = task["predictions"]
            assert prediction["result"] == by_key[key]["predictions"][0]["result"]
            scored.append((ranks[key], prediction["score"]))
        scores = [score for _, score in sorted(scored)]
        assert scores == sorted(scores, reverse=True)

        # Annotate every task in Label Studio; each answer is in the workspace at once.
        for n, task in enumerate(tasks):
            key = (task["data"]["image_id"], task["data"]["segment_id"])
            region = json.loads(json.dumps(task["predictions"][0]["result"][0]))
            answer = expected[key]
            if answer is not None:
                region["value"]["brushlabels"] = ["void" if answer == 255 else names[answer]]
            created = client.post(
                f"/api/tasks/{task['id']}/annotations", json={"result": [region]}, headers=headers
            )
            assert created.status_code == 201, created.text
            deadline = time.monotonic() + 30
            while True:
                with Workspace.open(workspace, read_only=True) as ws:
                    left = ws.count_unanswered(1)
                if left == len(tasks) - n - 1:
                    break
                assert time.monotonic() < deadline, f"answer {n} did not reach the workspace"
                time.sleep(0.2)
    with Workspace.open(workspace) as ws:
        recorded = {
            (c["image_id"], c["segment_id"]): (c["after"] if c["relabel"] else None, c["annotator"])
            for c in ws.corrections(1)
            if c["source"] == "manual"
        }
        assert {k: v[0] for k, v in recorded.items()} == expected
        # A webhook carries the user's id, not the email (an export carries the email).
        assert {v[1] for v in recorded.values()} == {f"label-studio-user-{me['id']}"}
        # Every query answered: the loop continues the round.
        finished = run_rounds(ws, config(rounds=1, oracle="human"), show_progress=False)
        assert finished.finished
        assert [r.status for r in ws.rounds()] == ["closed"]


def _wait(condition: Any, *, what: str, timeout: float = 300.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.5)


def _answered(workspace: Path, round_index: int) -> dict[tuple[str, int], list[int | None]]:
    with Workspace.open(workspace, read_only=True) as ws:
        out: dict[tuple[str, int], list[int | None]] = {}
        for c in ws.corrections(round_index):
            if c["source"] == "manual":
                key = (c["image_id"], int(c["segment_id"]))
                out.setdefault(key, []).append(c["after"] if c["relabel"] else None)
        return out


def test_label_studio_runs_two_rounds_through_the_backend_across_a_kill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two rounds of the default strategy answered only through Label Studio's API, no
    a2lc command between them; the backend is killed (SIGKILL) mid-round and started
    again. The end state is the simulated oracle's giving the same answers."""
    from tests.test_default_strategy import default_config, final_state

    with make_workspace(tmp_path / "simulated") as ws:
        assert run_rounds(ws, default_config("gt", rounds=2), show_progress=False).finished
    simulated = final_state(tmp_path / "simulated" / "ws")
    with make_workspace(tmp_path / "loop") as ws:
        assert run_rounds(ws, default_config("human", rounds=2), show_progress=False).waiting_round
        names = list(ws.class_names)
        labeling = labeling_config(names, ws.palette)
        images = Path(ws.samples[0].image_path).resolve().parent
    workspace = tmp_path / "loop" / "ws"
    ls_port, backend_port = free_port(), free_port()
    base, backend = f"http://127.0.0.1:{ls_port}", f"http://127.0.0.1:{backend_port}"
    ls_argv, ls_env = label_studio(tmp_path, ls_port)
    ls_env = {
        **ls_env,
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(tmp_path),
    }
    with (
        contextlib.ExitStack() as stack,
        running(ls_argv, env=ls_env, url=f"{base}/health", what="Label Studio"),
    ):
        client, headers = login(base)
        token = client.post("/api/token/", headers=headers).json()["token"]
        project = client.post(
            "/api/projects", json={"title": "a2lc loop", "label_config": labeling}, headers=headers
        ).json()["id"]
        backend_argv = [
            *(sys.executable, "-m", "a2lc", "ls-backend", "-w", str(workspace)),
            *("--port", str(backend_port), "--label-studio", base, "--project", str(project)),
            *("--poll-seconds", "2"),
        ]
        env = {**os.environ, "LABEL_STUDIO_API_KEY": token, "A2LC_THREADS": "1"}

        def tasks_of(round_index: int) -> list[dict[str, Any]]:
            listing = client.get(f"/api/tasks?project={project}&fields=all&page_size=1000").json()
            found = listing["tasks"] if isinstance(listing, dict) else listing
            return [t for t in found if t["data"].get("round") == round_index]

        def annotate(task: dict[str, Any], answer: int | None) -> None:
            region = json.loads(json.dumps(task["predictions"][0]["result"][0]))
            if answer is not None:
                region["value"]["brushlabels"] = ["void" if answer == 255 else names[answer]]
            reply = client.post(
                f"/api/tasks/{task['id']}/annotations", json={"result": [region]}, headers=headers
            )
            assert reply.status_code == 201, reply.text

        expected: dict[int, dict[tuple[str, int], int | None]] = {}
        with Workspace.open(workspace, read_only=True) as ws:
            expected[1] = oracle_answers(ws, 1)
        log = stack.enter_context(tempfile.TemporaryFile())
        process = subprocess.Popen(
            [*backend_argv], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for(f"{backend}/health", process, what="a2lc ls-backend", log=log)
            connected = client.post(
                "/api/ml",
                json={"project": project, "url": backend, "title": "a2lc"},
                headers=headers,
            )
            assert connected.status_code == 201, connected.text
            first = _wait(lambda: len(tasks_of(1)) == 20 and tasks_of(1), what="round 1's tasks")
            storages = client.get(f"/api/storages/localfiles?project={project}").json()
            assert [s["path"] for s in storages] == [str(images)]
            key = lambda t: (t["data"]["image_id"], t["data"]["segment_id"])  # noqa: E731
            for task in first[:10]:  # answered with the backend running: webhooks
                annotate(task, expected[1][key(task)])
            _wait(lambda: len(_answered(workspace, 1)) == 10, what="10 answers recorded")
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # mid-round, no goodbye
            process.wait()
        for task in first[10:]:  # answered while the backend is down
            annotate(task, expected[1][key(task)])
        with running(backend_argv, env=env, url=f"{backend}/health", what="a2lc ls-backend"):
            second = _wait(lambda: len(tasks_of(2)) == 20 and tasks_of(2), what="round 2's tasks")
            with Workspace.open(workspace, read_only=True) as ws:
                assert [r.status for r in ws.rounds()] == ["closed", "querying"]
                expected[2] = oracle_answers(ws, 2)
            assert all(t["predictions"][0]["model_version"] == "a2lc-round-2" for t in second)
            # The backend owns the workspace: a run says what to do, reading still works.
            capsys.readouterr()
            assert main(["run", "-w", str(workspace), "--oracle", "human", "--rounds", "2"]) == 1
            assert "served to Label Studio by `a2lc ls-backend`" in capsys.readouterr().err
            assert main(["status", "-w", str(workspace)]) == 0
            for task in second:
                annotate(task, expected[2][key(task)])

            def finished() -> bool:
                state = httpx.get(f"{backend}/health", timeout=5).json()["loop"]["state"]
                return str(state).startswith("finished")

            _wait(finished, what="the run finished")
        everything = tasks_of(1) + tasks_of(2)  # each query put into the project once
        assert len({(*key(t), t["data"]["round"]) for t in everything}) == len(everything) == 40
    for r in (1, 2):
        answered = _answered(workspace, r)
        assert all(len(v) == 1 for v in answered.values())  # each answer exactly once
        assert {k: v[0] for k, v in answered.items()} == expected[r]
    with Workspace.open(workspace, read_only=True) as ws:
        assert [r.status for r in ws.rounds()] == ["closed", "closed"]
    got = final_state(workspace)
    assert got == simulated | {"metrics": got["metrics"]}
    for r, m in simulated["metrics"].items():
        assert got["metrics"][r] == pytest.approx(m, nan_ok=True), r


def test_label_studio_reviews_automatic_changes(
    with_changes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Automatic changes pushed to a real Label Studio as review tasks (the change as the
    prediction, its confidence as the score), reviewed through its API, read back."""
    from tests.conftest import REVIEW_CHANGES

    with Workspace.open(with_changes, read_only=True) as ws:
        names = list(ws.class_names)
        labeling = labeling_config(names, ws.palette)
        changes = {c.id: c for c in ws.automatic_changes()}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ls_argv, ls_env = label_studio(tmp_path, port)
    with running(ls_argv, env=ls_env, url=f"{base}/health", what="Label Studio"):
        client, headers = login(base)
        token = client.post("/api/token/", headers=headers).json()["token"]
        project = client.post(
            "/api/projects",
            json={"title": "a2lc review", "label_config": labeling},
            headers=headers,
        ).json()["id"]
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
        push = ["export-changes", "-w", str(with_changes), "--label-studio", base]
        assert main([*push, "--project", str(project)]) == 0
        assert main([*push, "--project", str(project)]) == 0  # nothing added twice
        listing = client.get(f"/api/tasks?project={project}&fields=all&page_size=1000").json()
        tasks = listing["tasks"] if isinstance(listing, dict) else listing
        assert len(tasks) == REVIEW_CHANGES
        task = tasks[0]
        change = changes[task["data"]["change_id"]]
        prediction = task["predictions"][0]
        assert prediction["result"][0]["value"]["brushlabels"] == [names[change.after]]
        assert prediction["score"] == pytest.approx(change.confidence)

        def review(task: dict[str, Any], label: str | None) -> None:
            region = json.loads(json.dumps(task["predictions"][0]["result"][0]))
            if label:
                region["value"]["brushlabels"] = [label]
            result = [] if label == "" else [region]
            reply = client.post(
                f"/api/tasks/{task['id']}/annotations", json={"result": result}, headers=headers
            )
            assert reply.status_code == 201, reply.text

        review(tasks[0], None)  # accept
        review(tasks[1], tasks[1]["data"]["before"])  # revert
        review(tasks[2], "")  # region deleted: void
        pull = ["import-reviews", "-w", str(with_changes), "--label-studio", base]
        assert main([*pull, "--project", str(project)]) == 0
        assert main([*pull, "--project", str(project)]) == 0  # a second pull is harmless
    with Workspace.open(with_changes, read_only=True) as ws:
        verdicts = {
            int(i): v
            for i, v in ws.connection.execute("SELECT change_id, verdict FROM reviews").fetchall()
        }
        ids = [t["data"]["change_id"] for t in tasks[:3]]
        assert verdicts == dict(zip(ids, ["accept", "revert", "revert"], strict=True))
        assert len(ws.automatic_changes()) == REVIEW_CHANGES - 2
        answers = [c for c in ws.corrections(1) if c["annotator"] == EMAIL]
        assert len(answers) == 3
