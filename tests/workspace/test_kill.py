"""Kill a real correction run with SIGKILL at several moments, then check that the
workspace opens, is consistent, and that rerunning finishes with the same result
as a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from a2lc.data.synthetic import make_synthetic_dataset
from a2lc.workspace import Workspace

ROUNDS = 4
BUDGET = 25

DRIVER = """
import sys
from a2lc.cli import main
from a2lc.workspace import Workspace
ws_dir, data, segments, pseudo, probs, rounds, budget = sys.argv[1:]
if not (Path := __import__("pathlib").Path)(ws_dir).exists():
    assert main(["init", "-w", ws_dir, "--data", data, "--segments", segments, "--labels", pseudo]) == 0
while True:
    with Workspace.open(ws_dir) as ws:
        closed = sum(r.status == "closed" for r in ws.rounds())
        open_round = ws.open_round()
    if open_round is not None:
        assert main(["correct", "-w", ws_dir]) == 0
    elif closed < int(rounds):
        assert main(["score", "-w", ws_dir, "--probs", probs, "--budget", budget]) == 0
    else:
        break
"""


def run_driver(args: list[str], *, kill_after: float | None = None) -> None:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    process = subprocess.Popen([sys.executable, "-c", DRIVER, *args], env=env)
    if kill_after is None:
        assert process.wait(timeout=300) == 0
        return
    time.sleep(kill_after)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


def final_state(ws_dir: Path) -> tuple[list[list[tuple[str, int]]], dict[str, np.ndarray]]:
    with Workspace.open(ws_dir) as ws:
        queries = [[(q.image_id, q.segment_id) for q in ws.queries(r.round)] for r in ws.rounds()]
        labels = {s.id: ws.read_labels(s.id) for s in ws.samples}
    return queries, labels


def check_consistent(ws_dir: Path) -> None:
    if not (ws_dir / "a2lc.sqlite").exists():
        return  # killed before the workspace was renamed into place
    connection = sqlite3.connect(ws_dir / "a2lc.sqlite")
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()
    with Workspace.open(ws_dir) as ws:
        rounds = ws.rounds()
        assert sum(r.status != "closed" for r in rounds) <= 1
        for info in rounds:
            if info.status == "closed":
                assert ws.count_unanswered(info.round) == 0
            assert len(ws.queries(info.round)) == BUDGET  # queries are all-or-nothing
        manual = {
            (c["image_id"], c["segment_id"]) for c in ws.corrections() if c["source"] == "manual"
        }
        for sample in ws.samples:
            table = ws.segment_table(sample.id)
            flagged = {
                (sample.id, int(i))
                for i, o in zip(table.ids, table.origin, strict=True)
                if o == "manual"
            }
            assert flagged == {k for k in manual if k[0] == sample.id}
            ws.read_labels(sample.id)


@pytest.mark.parametrize("fraction", [0.15, 0.35, 0.55, 0.75, 0.9])
def test_kill_and_resume(tmp_path: Path, fraction: float, request: pytest.FixtureRequest) -> None:
    data = make_synthetic_dataset(tmp_path / "data", num_images=40, height=72, width=96, cell=16)
    common = [
        str(data.root),
        str(data.segments),
        str(data.pseudo),
        str(data.probs),
        str(ROUNDS),
        str(BUDGET),
    ]

    reference = tmp_path / "reference"
    start = time.perf_counter()
    run_driver([str(reference), *common])
    duration = time.perf_counter() - start

    interrupted = tmp_path / "interrupted"
    run_driver([str(interrupted), *common], kill_after=fraction * duration)
    check_consistent(interrupted)
    run_driver([str(interrupted), *common])

    want_queries, want_labels = final_state(reference)
    got_queries, got_labels = final_state(interrupted)
    assert len(got_queries) == ROUNDS
    assert got_queries == want_queries
    for image_id, labels in want_labels.items():
        np.testing.assert_array_equal(got_labels[image_id], labels)
