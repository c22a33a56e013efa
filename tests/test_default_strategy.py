"""The default strategy (``validated+proven``) is as safe as the one before it (issue #34).

Its new state (the round plans beside the features, the answer model refitted from
every answer, the corrector's evidence pooled over rounds) must survive SIGKILL at
every step: a run killed right after each step commits and resumed ends exactly
as a run never interrupted, with the simulated annotator and with people answering
between runs. And what people answer ends in the same state as the simulated
annotator giving the same answers.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from a2lc.correction.learned import LearnedConfig
from a2lc.rounds import RunConfig, run_rounds
from a2lc.strategies import DEFAULT_STRATEGY
from a2lc.workspace import Answer, Workspace
from tests.test_rounds import config, make_workspace, run_cli
from tests.web.test_loop import oracle_answers

LEARNED = LearnedConfig(min_answers=5, first_test=3)
"""An answer model from round 2 on the tiny pool, and a first proof after 3 audits."""
ROUNDS = 3


def default_config(oracle: str, *, rounds: int = ROUNDS) -> RunConfig:
    return config(strategy=DEFAULT_STRATEGY, rounds=rounds, oracle=oracle, learned=LEARNED)


DRIVER = """
import sys
from tests.test_default_strategy import default_config
from a2lc.rounds import run_rounds
from a2lc.workspace import Workspace
path, oracle = sys.argv[1:]
with Workspace.open(path) as ws:
    run_rounds(ws, default_config(oracle), show_progress=False)
"""

# Right after each of these commits, i.e. in the middle of the step that follows.
KILL_POINTS = (
    "SELECT 1 FROM steps WHERE round = 0 AND name = 'eval'",  # → plan round 1 (prior ranks)
    "SELECT 1 FROM rounds WHERE round = 1",  # → answers of round 1
    "SELECT 1 FROM corrections WHERE round = 1 AND source = 'manual'",  # → proven corrector of round 1
    "SELECT 1 FROM steps WHERE round = 1 AND name = 'proven'",  # → estimate, close
    "SELECT 1 FROM rounds WHERE round = 1 AND status = 'closed'",  # → train θ_1
    "SELECT 1 FROM steps WHERE round = 1 AND name = 'train'",  # → evaluate θ_1
    "SELECT 1 FROM steps WHERE round = 1 AND name = 'eval'",  # → answer model, hand-over, plan 2
    "SELECT 1 FROM rounds WHERE round = 2",  # → answers of round 2
    "SELECT 1 FROM corrections WHERE round = 2 AND source = 'manual'",  # → proven corrector, evidence pooled over rounds
    "SELECT 1 FROM steps WHERE round = 2 AND name = 'proven'",  # → close round 2, train θ_2
    "SELECT 1 FROM steps WHERE round = 2 AND name = 'eval'",  # → plan round 3
    "SELECT 1 FROM corrections WHERE round = 3 AND source = 'manual'",  # → evidence of rounds 2-3
    "SELECT 1 FROM steps WHERE round = 3 AND name = 'proven'",  # → close round 3, train θ_3
)


def answer_open_round(path: Path) -> bool:
    """Answer the open round as the simulated annotator would, through the workspace API
    (what the annotation app and Label Studio's loop call); False when none is open."""
    with Workspace.open(path) as ws:
        info = ws.open_round()
        if info is None or not ws.count_unanswered(info.round):
            return False
        answers = oracle_answers(ws, info.round)
        ws.record_answers(
            info.round,
            [Answer(i, s, label, annotator="person") for (i, s), label in answers.items()],
        )
    return True


def reached(path: Path, sql: str) -> bool:
    with contextlib.closing(sqlite3.connect(path / "a2lc.sqlite")) as db:
        return db.execute(sql).fetchone() is not None


def final_state(path: Path) -> dict[str, Any]:
    with Workspace.open(path, read_only=True) as ws:
        metrics = {
            r: {k: v for k, v in m.items() if "seconds" not in k} for r, m in ws.metrics().items()
        }
        plans = {}
        done = range(1, len(ws.rounds()) + 1)
        for r in done:
            folder = path / "rounds" / f"round_{r:03d}"
            with np.load(folder / "learned_plan.npz") as archive:
                plans[r] = {k: archive[k].tolist() for k in archive.files}
            plans[r]["proven"] = (folder / "proven.json").read_text()
        return {
            "queries": [[(q.image_id, q.segment_id) for q in ws.queries(r)] for r in done],
            # As a set: people answer in their own order.
            "corrections": sorted(
                (c["round"], c["image_id"], c["segment_id"], c["before"], c["after"], c["source"])
                for c in ws.corrections()
            ),
            "labels": {s.id: ws.read_labels(s.id).tolist() for s in ws.samples},
            "metrics": metrics,
            "plans": plans,
        }


def check_equal(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["queries"] == want["queries"]
    assert got["corrections"] == want["corrections"]
    assert got["labels"] == want["labels"]
    assert got["plans"] == want["plans"]
    assert got["metrics"].keys() == want["metrics"].keys()
    for r, m in want["metrics"].items():
        assert got["metrics"][r].keys() == m.keys(), r
        for key, value in m.items():
            assert got["metrics"][r][key] == pytest.approx(value, rel=1e-9, nan_ok=True), (r, key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted run of the default with the simulated annotator."""
    root = tmp_path_factory.mktemp("reference")
    with make_workspace(root) as ws:
        result = run_rounds(ws, default_config("gt"), show_progress=False)
        assert result.finished
        # The new state is exercised: round 2 learns from round 1's answers.
        assert result.metrics[1]["learned_model"] == 0
        assert result.metrics[2]["learned_model"] == 1
        assert "learned_handover_weight" in result.metrics[2]
        assert result.metrics[3]["proven_evidence"] > result.metrics[3]["proven_round_sampled"] > 0
    return final_state(root / "ws")


def test_killed_at_every_step_with_the_simulated_annotator(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    with make_workspace(tmp_path):
        pass
    path = tmp_path / "ws"
    for sql in KILL_POINTS:
        run_cli([str(path), "gt"], kill_when=(path / "a2lc.sqlite", sql), driver=DRIVER)
    assert run_cli([str(path), "gt"], driver=DRIVER) == 0
    check_equal(final_state(path), reference)


def test_killed_at_every_step_with_people_answering(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    """``--oracle human``: the run stops for answers, people answer, the run goes on; it is
    killed at every step it runs, and ends as the simulated annotator's uninterrupted run."""
    with make_workspace(tmp_path):
        pass
    path = tmp_path / "ws"
    for sql in KILL_POINTS:
        if "source = 'manual'" in sql:
            continue  # people answer outside the run
        while not reached(path, sql):
            answer_open_round(path)  # a stopped run waits for these before it goes on
            code = run_cli(
                [str(path), "human"],
                kill_when=(path / "a2lc.sqlite", sql),
                driver=DRIVER,
                must_reach=False,
            )
            assert code in (None, 0), sql
    while True:
        assert run_cli([str(path), "human"], driver=DRIVER) == 0
        if not answer_open_round(path):
            break
    got = final_state(path)
    with Workspace.open(path, read_only=True) as ws:
        assert all(info.status == "closed" for info in ws.rounds())
        assert len(ws.rounds()) == ROUNDS
    # People's answers carry their name; otherwise the same state as the simulation.
    check_equal(got, reference)


def test_status_and_report_show_when_the_loop_starts_learning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from a2lc.cli import main

    with make_workspace(tmp_path) as ws:
        metrics = run_rounds(ws, default_config("gt", rounds=2), show_progress=False).metrics
    path = tmp_path / "ws"
    capsys.readouterr()
    assert main(["status", "-w", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hand-over weight" in out
    assert "AUROC 'is wrong' (cv)" in out
    rows = {int(line.split()[0]): line for line in out.splitlines() if line[:5].strip().isdigit()}
    weight = metrics[2]["learned_handover_weight"]
    auc = metrics[2]["learned_handover_learned_auroc"]
    explored = int(metrics[2]["learned_explored"])
    learning = [line for line in out.splitlines() if "fitted on" in line or "not yet" in line]
    assert learning[0].split()[0] == "1"
    assert "not yet (prior)" in learning[0]
    assert learning[1].split()[0] == "2"
    assert f"fitted on {int(metrics[2]['learned_training_answers'])} answers" in learning[1]
    assert f"{weight:.2f}" in learning[1]
    assert f"{auc:.3f}" in learning[1]
    assert f"{100 * explored / 20:.1f}% ({explored} of 20)" in learning[1]
    assert rows  # the rounds table is there too
    report = tmp_path / "report.html"
    assert main(["report", "-w", str(path), "--out", str(report)]) == 0
    page = report.read_text()
    assert "Learning from the answers" in page
    assert f"<td>{weight:.2f}</td>" in page
    assert f"<td>{auc:.3f}</td>" in page
