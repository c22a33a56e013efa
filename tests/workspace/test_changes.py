"""Automatic changes carry their evidence and can be taken back exactly (issue #36).

``data/schema7-lcm`` is a workspace written by a2lc at e2a8dfb (schema 7, before
changes kept their evidence): 10 generated images, `a2lc` strategy (LCM with a low
threshold), 2 rounds, budget 10: 238 automatic changes.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.correction.checked import CheckedConfig
from a2lc.correction.lcm import LCMConfig
from a2lc.correction.learned import LearnedConfig
from a2lc.errors import WorkspaceError
from a2lc.rounds import run_rounds
from a2lc.workspace import Answer, Workspace
from tests.test_rounds import config, make_workspace
from tests.web.test_loop import oracle_answers

OLD = Path(__file__).parent / "data" / "schema7-lcm"


def old_workspace(tmp_path: Path) -> Path:
    path = tmp_path / "old"
    shutil.copytree(OLD, path)
    return path


def segment_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path / "a2lc.sqlite") as db:
        return db.execute("SELECT * FROM segments ORDER BY image_id, segment_id").fetchall()


def labels(ws: Workspace) -> dict[str, bytes]:
    return {s.id: ws.read_labels(s.id).tobytes() for s in ws.samples}


def test_a_workspace_of_schema_7_opens_with_its_changes_listed(tmp_path: Path) -> None:
    path = old_workspace(tmp_path)
    with sqlite3.connect(path / "a2lc.sqlite") as db:
        before_rows = db.execute("SELECT * FROM segments").fetchall()
    with Workspace.open(path) as ws:
        changes = ws.automatic_changes()
        assert len(changes) == 238
        assert {c.corrector for c in changes} == {"lcm"}
        assert {c.round for c in changes} == {1, 2}
        assert all(c.evidence == {"recorded": "before schema 8: no evidence kept"} for c in changes)
        assert ws.rejected_changes() == set()
    with sqlite3.connect(path / "a2lc.sqlite") as db:
        assert sorted(db.execute("SELECT * FROM segments").fetchall()) == sorted(before_rows)
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 8


def test_reverting_every_round_newest_first_restores_the_initial_labels(tmp_path: Path) -> None:
    path = old_workspace(tmp_path)
    with Workspace.open(path) as ws:
        with pytest.raises(WorkspaceError, match=r"later rounds \(2\).*--round 2"):
            ws.revert_automatic_changes(1)
        dry = ws.revert_automatic_changes(2, dry_run=True)
        assert dry.id is None
        assert len(ws.automatic_changes(round_index=2)) == len(dry.reverted) == 85
        second = ws.revert_automatic_changes(2)
        assert [c.id for c in second.reverted] == [c.id for c in dry.reverted]
        first = ws.revert_automatic_changes(1)
        # Five segments changed in round 1 were answered by a person in round 2: kept.
        assert len(first.skipped) == 5
        assert all(reason.startswith("a person answered") for _, reason in first.skipped)
        kept = sorted(c.id for c, _ in first.skipped)
        assert [c.id for c in ws.automatic_changes()] == kept
        assert [r["changes"] for r in ws.reverts()] == [85, 148]
        manual = {
            (c["image_id"], c["segment_id"]) for c in ws.corrections() if c["source"] == "manual"
        }
        for sample in ws.samples:
            table = ws.segment_table(sample.id)
            for segment_id, origin, assigned in zip(
                table.ids, table.origin, table.assigned, strict=True
            ):
                if (sample.id, int(segment_id)) in manual:
                    assert origin == "manual"  # a person's answer is never reverted
                else:
                    assert (origin, assigned) == ("initial", -1), (sample.id, segment_id)
        # What was reverted is never applied again.
        change = second.reverted[0]
        with pytest.raises(WorkspaceError, match="was reverted"):
            ws.record_auto_corrections(2, [(change.image_id, change.segment_id, change.after)])


CORRECTORS = {
    "lcm": ("alc+lcm", {"lcm": LCMConfig(epochs=20, thresholds=(0.0,))}, 1),
    "checked": (
        "alc+checked",
        {
            "checked": CheckedConfig(
                audit_share=0.5, min_audits=2, min_precision=0.01, min_proposal_confidence=0.0
            )
        },
        2,
    ),
    "proven": (
        "validated+proven",
        {
            "learned": LearnedConfig(
                min_answers=5, audit_share=0.5, first_test=2, min_precision=0.01
            )
        },
        2,
    ),
    # The proven corrector under the fdr guarantee, every voice (issue #35).
    "proven-fdr": (
        "validated+proven",
        {
            "learned": LearnedConfig(
                min_answers=5,
                audit_share=0.5,
                min_precision=0.01,
                guarantee="fdr",
                voices=("answer", "round", "neighbours", "image"),
            )
        },
        2,
    ),
}


@pytest.mark.parametrize("corrector", sorted(CORRECTORS))
def test_revert_restores_the_state_just_before_the_changes(
    tmp_path: Path, corrector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy, options, rounds = CORRECTORS[corrector]
    if corrector == "proven":
        # On the tiny generated pool the answer model's proposals are never right, so no
        # slice is ever proven; accept the whole region to have changes to take back.
        from a2lc.correction.learned import Slice
        from a2lc.steps import learning

        monkeypatch.setattr(learning, "proven_threshold", lambda *a, **k: Slice(0.0, 1, 1, 1.0, 1))
    run = config(strategy=strategy, rounds=rounds, oracle="human", budget=10, **options)
    with make_workspace(tmp_path) as ws:
        for _ in range(rounds):
            waiting = run_rounds(ws, run, show_progress=False).waiting_round
            assert waiting is not None
            answers = oracle_answers(ws, waiting)
            ws.record_answers(waiting, [Answer(i, s, a) for (i, s), a in answers.items()])
            if waiting < rounds:
                run_rounds(ws, run, show_progress=False)
        before_labels = labels(ws)
    path = tmp_path / "ws"
    before_rows = segment_rows(path)  # answers in, the corrector not yet run
    with Workspace.open(path) as ws:
        assert run_rounds(ws, run, show_progress=False).finished
        changes = ws.automatic_changes(round_index=rounds)
        assert changes, f"the {corrector} corrector changed nothing to revert"
        assert {c.corrector for c in changes} == {corrector.split("-")[0]}
        for change in changes:
            assert change.evidence["guarantee"] in ("none", "bound", "fdr")
            assert change.evidence["sources"]
            assert change.confidence is not None
        assert labels(ws) != before_labels
        result = ws.revert_automatic_changes(rounds)
        assert len(result.reverted) == len(changes)
        assert result.skipped == []
        assert labels(ws) == before_labels
    assert segment_rows(path) == before_rows


def test_the_cli_reverts_by_class_pair_and_says_what_a_dry_run_would_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = old_workspace(tmp_path)
    with Workspace.open(path) as ws:
        pair = ws.automatic_changes(round_index=2)[0]
        names = list(ws.class_names)
        count = len(
            ws.automatic_changes(round_index=2, from_class=pair.before, to_class=pair.after)
        )
    rows = segment_rows(path)
    args = ["revert", "-w", str(path), "--round", "2", "--from-class", names[pair.before]]
    args += ["--to-class", str(pair.after)]
    assert main([*args, "--dry-run"]) == 0
    assert f"round 2: would revert {count} automatic changes" in capsys.readouterr().out
    assert segment_rows(path) == rows
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"round 2: reverted {count} automatic changes" in out
    assert f"{names[pair.before]} → {names[pair.after]}: {count}" in out
    with Workspace.open(path) as ws:
        assert len(ws.automatic_changes(round_index=2)) == 85 - count
    assert main(["revert", "-w", str(path), "--round", "2", "--to-class", "nothing"]) == 1
    assert "not a class of this workspace" in capsys.readouterr().err
    assert main(["revert", "-w", str(path), "--round", "9"]) == 1
    assert "has no round 9" in capsys.readouterr().err


def test_a_killed_revert_is_all_or_nothing(tmp_path: Path) -> None:
    source = old_workspace(tmp_path)
    with Workspace.open(source):
        pass  # migrated once
    before = segment_rows(source)
    for k, delay in enumerate(np.linspace(0.2, 2.0, 6)):
        path = tmp_path / f"kill{k}"
        shutil.copytree(source, path)
        process = subprocess.Popen(
            [sys.executable, "-m", "a2lc", "revert", "-w", str(path), "--round", "2"],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(float(delay))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        with Workspace.open(path) as ws:
            done = ws.reverts()
            left = len(ws.automatic_changes(round_index=2))
        rows = segment_rows(path)
        if done:
            assert left == 0
            assert rows != before
        else:
            assert left == 85
            assert rows == before


def test_status_and_the_report_list_changes_by_round_and_class_pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from a2lc.steps.changes import change_groups

    with make_workspace(tmp_path) as ws:
        lcm = LCMConfig(epochs=20, thresholds=(0.0,))
        assert run_rounds(
            ws, config(strategy="alc+lcm", rounds=1, budget=10, lcm=lcm), show_progress=False
        ).finished
        changes = ws.automatic_changes()
        assert changes
        first = changes[0]
        ws.revert_automatic_changes(1, from_class=first.before, to_class=first.after)
        groups = change_groups(ws, truth=True)
        names = list(ws.class_names)
    assert sum(g.count for g in groups) == len(changes)
    pair = next(
        g for g in groups if (g.before, g.after) == (names[first.before], names[first.after])
    )
    assert pair.reverted == pair.count
    assert sum(g.reverted for g in groups) == pair.count
    assert all(g.true is not None and 0 <= g.true <= 1 for g in groups)
    assert all(g.estimated is None and "no guarantee" in g.guarantee for g in groups)
    capsys.readouterr()
    assert main(["status", "-w", str(tmp_path / "ws"), "--data-miou"]) == 0
    out = capsys.readouterr().out
    assert "automatic changes by round and class pair" in out
    assert f"{pair.before} → {pair.after}" in out
    assert "note: lcm: no guarantee" in out
    report = tmp_path / "report.html"
    assert main(["report", "-w", str(tmp_path / "ws"), "--out", str(report)]) == 0
    page = report.read_text()
    assert "Automatic changes by class pair" in page
    assert (
        f"<td>{pair.before} → {pair.after}</td><td>{pair.count}</td><td>{pair.count}</td>" in page
    )


def test_the_report_pictures_are_a_uniform_sample_not_the_most_confident() -> None:
    from a2lc.steps.changes import change_picture, sample_changes
    from a2lc.workspace.changes import AutoChange

    changes = [
        AutoChange(i, 1 + i % 2, "img", i + 1, 0, 1, "proven", 1.0 - i / 100, {}) for i in range(40)
    ]
    counts = np.zeros(40)
    for seed in range(500):
        picked = sample_changes(changes, per_round=4, seed=seed)
        assert [c.round for c in picked] == [1] * 4 + [2] * 4
        counts[[c.id for c in picked]] += 1
    # Every change is equally likely (4 of 20 per round): no preference for confidence.
    assert counts.min() > 0.6 * 100
    assert counts.max() < 1.4 * 100
    most_confident = {c.id for c in changes[:2]}
    assert {c.id for c in sample_changes(changes, seed=0)} != most_confident
    assert sample_changes(changes, seed=3) == sample_changes(changes, seed=3)

    image = np.zeros((20, 30, 3), dtype=np.uint8)
    segments = np.zeros((20, 30), dtype=np.int32)
    segments[5:10, 10:20] = 7
    picture = change_picture(image, segments, 7, before=(200, 0, 0), after=(0, 0, 200), margin=2)
    assert picture.shape == (9, 2 * 14 + 4, 3)
    left, right = picture[:, :14], picture[:, 18:]
    assert (left[4, 7] == [110, 0, 0]).all()
    assert (right[4, 7] == [0, 0, 110]).all()
    assert (left[2, 2] == 255).all()  # the outline
    assert (left[0, 0] == 0).all()  # outside the segment: the image
    with pytest.raises(ValueError, match="segment 8"):
        change_picture(image, segments, 8, before=(0, 0, 0), after=(0, 0, 0))


def test_the_report_shows_every_round_with_changes(tmp_path: Path) -> None:
    from a2lc.report import workspace_report

    with make_workspace(tmp_path) as ws:
        lcm = LCMConfig(epochs=20, thresholds=(0.0,))
        run = config(strategy="alc+lcm", rounds=2, budget=10, lcm=lcm)
        assert run_rounds(ws, run, show_progress=False).finished
        rounds = sorted({c.round for c in ws.automatic_changes()})
        assert rounds
        page = workspace_report(ws, tmp_path / "report.html").read_text()
    for r in rounds:
        assert page.count(f"<figcaption>round {r}, lcm:") == 4
