"""Label Studio review tasks of automatic changes, and the verdicts back (issue #36)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from a2lc.cli import main
from a2lc.errors import DataError
from a2lc.interop.ls_review import import_reviews, review_tasks
from a2lc.workspace import Workspace
from a2lc.workspace.review import ReviewDesk
from tests.conftest import REVIEW_CHANGES


def annotate(task: dict[str, Any], label: str | None, who: str = "lee@example.org") -> None:
    """What Label Studio's export holds once a reviewer submitted the task: the predicted
    region kept (``label`` None), relabelled, or deleted (``label`` "")."""
    region = copy.deepcopy(task["predictions"][0]["result"][0])
    result = [] if label == "" else [region]
    if label:
        region["value"]["brushlabels"] = [label]
    task["annotations"] = [
        {"id": 1, "completed_by": {"email": who}, "result": result, "updated_at": "2026-12-08"}
    ]


def test_export_review_tasks_then_import_the_verdicts(with_changes: Path, tmp_path: Path) -> None:
    out = tmp_path / "ls"
    assert main(["export-changes", "-w", str(with_changes), "--out", str(out)]) == 0
    tasks = json.loads((out / "tasks.json").read_text())
    assert len(tasks) == REVIEW_CHANGES
    assert (out / "labeling_config.xml").read_text().startswith("<View>")
    with Workspace.open(with_changes, read_only=True) as ws:
        names = list(ws.class_names)
        assert [t["data"]["change_id"] for t in tasks] == ReviewDesk(ws).queue()
        changes = {c.id: c for c in ws.automatic_changes()}
    first = tasks[0]
    change = changes[first["data"]["change_id"]]
    assert first["data"]["after"] == names[change.after]
    assert first["predictions"][0]["result"][0]["value"]["brushlabels"] == [names[change.after]]
    assert 0 <= first["predictions"][0]["score"] <= 1
    assert "10%" in first["data"]["guarantee"]

    # Reviewed in Label Studio: keep, revert to the old class, another class, deleted.
    annotate(tasks[0], None)
    annotate(tasks[1], tasks[1]["data"]["before"])
    other = next(
        n for n in names if n not in (tasks[2]["data"]["before"], tasks[2]["data"]["after"])
    )
    annotate(tasks[2], other)
    annotate(tasks[3], "")
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    assert main(["import-reviews", "-w", str(with_changes), "--label-studio", str(export)]) == 0
    with Workspace.open(with_changes) as ws:
        verdicts = ReviewDesk(ws).verdicts()
        ids = [t["data"]["change_id"] for t in tasks[:4]]
        assert [verdicts[i] for i in ids] == ["accept", "revert", "revert", "revert"]
        answers = {
            (c["image_id"], c["segment_id"]): (c["after"], c["annotator"])
            for c in ws.corrections(1)
            if c["annotator"] == "lee@example.org"
        }
        expected = [changes[ids[0]].after, changes[ids[1]].before, names.index(other), 255]
        got = [answers[(changes[i].image_id, changes[i].segment_id)][0] for i in ids]
        assert got == expected
        assert len(ws.automatic_changes()) == REVIEW_CHANGES - 3
        # A re-import is harmless.
        assert import_reviews(ws, export) == {
            "recorded": 0,
            "already_recorded": 4,
            "accepted": 1,
            "reverted": 3,
        }
        assert len(review_tasks(ws)) == REVIEW_CHANGES - 4


def test_a_bad_export_records_nothing(with_changes: Path, tmp_path: Path) -> None:
    with Workspace.open(with_changes) as ws:
        tasks = review_tasks(ws)
        annotate(tasks[0], None)
        annotate(tasks[1], "no such class")
        export = tmp_path / "export.json"
        export.write_text(json.dumps(tasks))
        with pytest.raises(DataError, match="unknown label 'no such class'"):
            import_reviews(ws, export)
        assert ReviewDesk(ws).verdicts() == {}
        bad = [{"data": {"image_id": "x", "segment_id": 1}, "annotations": []}]
        export.write_text(json.dumps(bad))
        with pytest.raises(DataError, match="not an a2lc review task"):
            import_reviews(ws, export)
        # A change no longer in force (reverted meanwhile) refuses the file.
        annotate(tasks[1], None)
        export.write_text(json.dumps(tasks[:2]))
        ws.revert_automatic_changes(1)
        with pytest.raises(DataError, match=r"no longer in force.*nothing recorded"):
            import_reviews(ws, export)
        assert ReviewDesk(ws).verdicts() == {}


def test_the_backend_loop_never_takes_a_review_task_for_a_query(with_changes: Path) -> None:
    """Review tasks pushed into the project the ML backend serves stay out of its rounds."""
    from a2lc.interop.ls_loop import _round_of

    with Workspace.open(with_changes) as ws:
        tasks = review_tasks(ws)
    assert tasks
    assert all(isinstance(t["data"]["round"], int) for t in tasks)
    assert {_round_of(t) for t in tasks} == {None}
    assert _round_of({"data": {"round": 2, "image_id": "a", "segment_id": 1}}) == 2


def test_malformed_annotations_are_read_safely(with_changes: Path, tmp_path: Path) -> None:
    with Workspace.open(with_changes) as ws:
        tasks = review_tasks(ws)
        annotate(tasks[0], None)
        tasks[0]["annotations"].append(
            {"id": "x", "result": [{"type": "brushlabels", "value": []}]}
        )
        tasks[1]["annotations"] = [
            {"id": 2, "result": [{"type": "brushlabels", "value": {"brushlabels": "sky"}}]}
        ]
        export = tmp_path / "export.json"
        export.write_text(json.dumps(tasks[:2]))
        summary = import_reviews(ws, export)
        # The malformed region reads as no label (void): a revert, not a crash.
        assert summary["recorded"] == 2
