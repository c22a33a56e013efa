from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.errors import DataError
from a2lc.interop.label_studio import read_answers
from a2lc.interop.rle import decode_mask
from a2lc.workspace import Workspace
from tests.conftest import OPEN_ROUND_BUDGET


def test_tasks_round_trip_to_corrections(
    open_round: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ls"
    assert main(["export-queries", "-w", str(open_round), "--out", str(out)]) == 0
    tasks = json.loads((out / "tasks.json").read_text())
    config = (out / "labeling_config.xml").read_text()
    assert len(tasks) == OPEN_ROUND_BUDGET
    with Workspace.open(open_round) as ws:
        names = list(ws.class_names)
        queries = {(q.image_id, q.segment_id): q for q in ws.queries(1)}
        for name in [*names, "void"]:
            assert f'value="{name}"' in config
        for task in tasks:
            key = (task["data"]["image_id"], task["data"]["segment_id"])
            (prediction,) = task["predictions"]
            assert prediction["score"] == pytest.approx(queries[key].score)
            (region,) = prediction["result"]
            sample = ws.sample(key[0])
            assert task["data"]["image"].endswith(str(Path(sample.image_path).resolve()))
            mask = decode_mask(region["value"]["rle"], height=sample.height, width=sample.width)
            np.testing.assert_array_equal(mask, ws.read_segments(key[0]) == key[1])
            table = ws.segment_table(key[0])
            current = int(table.label[table.ids.tolist().index(key[1])])
            assert region["value"]["brushlabels"] == [names[current]]

    # People annotate in Label Studio: keep, change, void, delete the region, skip one.
    plan = ["keep", "change", "void", "delete", "keep", "skip"]
    expected = {}
    for task, action in zip(tasks, plan, strict=True):
        region = json.loads(json.dumps(task["predictions"][0]["result"][0]))
        current = region["value"]["brushlabels"][0]
        if action == "skip":
            continue
        if action == "change":
            region["value"]["brushlabels"] = [names[(names.index(current) + 1) % len(names)]]
        if action == "void":
            region["value"]["brushlabels"] = ["void"]
        result = [] if action == "delete" else [region]
        task["annotations"] = [
            {
                "id": 1,
                "completed_by": {"email": "ann@example.org"},
                "result": result,
                "was_cancelled": False,
            }
        ]
        key = (task["data"]["image_id"], task["data"]["segment_id"])
        expected[key] = {
            "keep": None,
            "change": (names.index(current) + 1) % len(names),
            "void": 255,
            "delete": 255,
        }[action]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    assert main(["import-answers", "-w", str(open_round), "--label-studio", str(export)]) == 0
    assert "recorded 5 answers; 1 queries still open" in capsys.readouterr().out
    with Workspace.open(open_round) as ws:
        rows = ws.connection.execute(
            "SELECT image_id, segment_id, before, after, relabel, annotator FROM corrections WHERE source = 'manual'"
        ).fetchall()
    assert len(rows) == 5
    for image_id, segment_id, before, after, relabel, annotator in rows:
        label = expected[(image_id, segment_id)]
        assert annotator == "ann@example.org"
        assert relabel == (label is not None)
        assert after == (before if label is None else label)


def test_bad_exports_change_nothing(
    open_round: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ls"
    main(["export-queries", "-w", str(open_round), "--out", str(out)])
    tasks = json.loads((out / "tasks.json").read_text())
    for task in tasks:
        region = task["predictions"][0]["result"][0]
        task["annotations"] = [{"id": 1, "result": [region]}]
    tasks[-1]["annotations"][0]["result"][0]["value"]["brushlabels"] = ["dragon"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tasks))
    with (
        Workspace.open(open_round) as ws,
        pytest.raises(DataError, match="unknown label 'dragon'"),
    ):
        read_answers(ws, bad)
    assert main(["import-answers", "-w", str(open_round), "--label-studio", str(bad)]) == 1
    assert "task 5: unknown label 'dragon'" in capsys.readouterr().err
    (tmp_path / "x.json").write_text("{")
    assert (
        main(["import-answers", "-w", str(open_round), "--label-studio", str(tmp_path / "x.json")])
        == 1
    )
    assert "not a readable JSON file" in capsys.readouterr().err
    with Workspace.open(open_round) as ws:
        assert ws.count_unanswered(1) == OPEN_ROUND_BUDGET
