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
            # Label Studio wants 0..1: the round's best query is 1, the raw score is in meta.
            best = max(q.score for q in queries.values())
            assert prediction["score"] == pytest.approx(queries[key].score / best)
            assert 0 <= prediction["score"] <= 1
            assert task["meta"] == {
                "rank": queries[key].rank,
                "acquisition_score": queries[key].score,
            }
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
    err = capsys.readouterr().err
    assert "nothing recorded" in err
    assert "task 5 (" in err
    assert "unknown label 'dragon'" in err
    (tmp_path / "x.json").write_text("{")
    assert (
        main(["import-answers", "-w", str(open_round), "--label-studio", str(tmp_path / "x.json")])
        == 1
    )
    assert "not a readable JSON file" in capsys.readouterr().err
    with Workspace.open(open_round) as ws:
        assert ws.count_unanswered(1) == OPEN_ROUND_BUDGET


def exported_tasks(open_round: Path, tmp_path: Path, *extra: str) -> list[dict[str, object]]:
    out = tmp_path / "ls"
    assert main(["export-queries", "-w", str(open_round), "--out", str(out), *extra]) == 0
    tasks: list[dict[str, object]] = json.loads((out / "tasks.json").read_text())
    return tasks


def annotate(task: dict[str, object], labels: list[str], **annotation: object) -> None:
    """Give ``task`` one annotation: its pre-filled region with ``labels``."""
    region = json.loads(json.dumps(task["predictions"][0]["result"][0]))  # type: ignore[index]
    region["value"]["brushlabels"] = labels
    task["annotations"] = [{"id": 1, "result": [region], **annotation}]


def import_file(open_round: Path, tmp_path: Path, tasks: object, name: str = "e.json") -> int:
    path = tmp_path / name
    path.write_text(json.dumps(tasks))
    return main(["import-answers", "-w", str(open_round), "--label-studio", str(path)])


def current_name(task: dict[str, object]) -> str:
    return str(task["predictions"][0]["result"][0]["value"]["brushlabels"][0])  # type: ignore[index]


def test_reimporting_a_full_export_is_idempotent_and_conflicts_are_reported(
    open_round: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = exported_tasks(open_round, tmp_path)
    with Workspace.open(open_round) as ws:
        names = list(ws.class_names)
    other = next(n for n in names if n != current_name(tasks[0]))
    annotate(tasks[0], [other], completed_by={"email": "a@x.org"})
    annotate(tasks[1], [current_name(tasks[1])], completed_by={"email": "a@x.org"})
    assert import_file(open_round, tmp_path, tasks) == 0
    assert "recorded 2 answers" in capsys.readouterr().out
    # Later: the same export plus one new answer. The two are skipped, the new one recorded.
    annotate(tasks[2], ["void"], completed_by={"email": "b@x.org"})
    assert import_file(open_round, tmp_path, tasks) == 0
    out = capsys.readouterr()
    assert "recorded 1 answers" in out.out
    assert "2 already recorded (skipped)" in out.out
    assert "refused" not in out.err
    # An export that says something else for a recorded answer: reported, not changed.
    annotate(tasks[0], ["void"], completed_by={"email": "a@x.org"})
    assert import_file(open_round, tmp_path, tasks) == 0
    err = capsys.readouterr().err
    assert f"already answered as {other!r}; this export says void (not changed)" in err
    with Workspace.open(open_round) as ws:
        manual = [c for c in ws.corrections() if c["source"] == "manual"]
    assert len(manual) == 3
    assert {c["annotator"] for c in manual} == {"a@x.org", "b@x.org"}


def test_reimporting_an_added_label_is_no_conflict(
    open_round: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Label Studio keeps the pre-filled label when another is added: the added one is
    the answer, on the first import and on every re-import of the same export."""
    tasks = exported_tasks(open_round, tmp_path)
    with Workspace.open(open_round) as ws:
        names = list(ws.class_names)
    shown = current_name(tasks[0])
    added = next(n for n in names if n != shown)
    annotate(tasks[0], [shown, added], completed_by={"email": "a@x.org"})
    assert import_file(open_round, tmp_path, tasks) == 0
    assert "recorded 1 answers" in capsys.readouterr().out
    assert import_file(open_round, tmp_path, tasks) == 0
    out = capsys.readouterr()
    assert "1 already recorded (skipped)" in out.out
    assert "already answered" not in out.err
    with Workspace.open(open_round) as ws:
        (row,) = [c for c in ws.corrections() if c["source"] == "manual"]
    assert names[row["after"]] == added


def test_repainted_brushes_become_painted_answers_and_ambiguous_labels_refuse_their_task(
    open_round: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from a2lc.interop.rle import encode_mask

    tasks = exported_tasks(open_round, tmp_path)
    with Workspace.open(open_round) as ws:
        names = list(ws.class_names)
        data = tasks[0]["data"]
        image_id, segment_id = data["image_id"], data["segment_id"]  # type: ignore[index]
        painted = ws.read_segments(image_id) == segment_id
    painted[0, :] = True  # the annotator painted a stripe outside the segment
    annotate(tasks[0], [names[0]])
    tasks[0]["annotations"][0]["result"][0]["value"]["rle"] = encode_mask(painted)  # type: ignore[index]
    # Another label added to the pre-filled one: the added one is meant.
    keep = current_name(tasks[1])
    added = next(n for n in names if n != keep)
    annotate(tasks[1], [keep, added])
    # Two labels added beside the pre-filled one: which is meant cannot be told.
    third = current_name(tasks[2])
    annotate(tasks[2], [third, *[n for n in names if n != third][:2]])
    # A mixed segment split by painting: half of it repainted another class.
    data3 = tasks[3]["data"]
    image3, segment3 = data3["image_id"], data3["segment_id"]  # type: ignore[index]
    with Workspace.open(open_round) as ws:
        whole = ws.read_segments(image3) == segment3
        before3 = ws.read_labels(image3)
    rows, cols = np.nonzero(whole)
    part = np.zeros_like(whole)
    part[rows[: rows.size // 2], cols[: rows.size // 2]] = True
    keep3 = current_name(tasks[3])
    other3 = next(n for n in names if n != keep3)
    annotate(tasks[3], [keep3])
    region = tasks[3]["annotations"][0]["result"][0]  # type: ignore[index]
    region["value"]["rle"] = encode_mask(whole & ~part)
    second = {**region, "id": "split", "value": {**region["value"], "rle": encode_mask(part),
                                                 "brushlabels": [other3]}}  # fmt: skip
    tasks[3]["annotations"][0]["result"].append(second)  # type: ignore[index]
    assert import_file(open_round, tmp_path, tasks) == 0
    out = capsys.readouterr()
    assert "recorded 3 answers" in out.out
    assert "which one is meant?" in out.err
    assert "painted pixels were outside their segment and were left out" in out.err
    with Workspace.open(open_round) as ws:
        answers = {(c["image_id"], c["segment_id"]): c for c in ws.corrections()}
        key = (tasks[1]["data"]["image_id"], tasks[1]["data"]["segment_id"])  # type: ignore[index]
        assert names[answers[key]["after"]] == added
        assert answers[key]["annotator"] == "label-studio"
        # The stripe outside the segment is left out; the segment is names[0] throughout.
        first = ws.read_labels(image_id)
        segment0 = ws.read_segments(image_id) == segment_id
        assert (first[segment0] == 0).all()
        # The split segment: each part has its painted class, pixel for pixel.
        after3 = ws.read_labels(image3)
        assert (after3[part] == names.index(other3)).all()
        assert (after3[whole & ~part] == names.index(keep3)).all()
        np.testing.assert_array_equal(after3[~whole], before3[~whole])


def test_json_min_exports_and_user_ids(
    open_round: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = exported_tasks(open_round, tmp_path)
    with Workspace.open(open_round) as ws:
        names = list(ws.class_names)
    rows = []
    for n, task in enumerate(tasks[:2]):
        region = task["predictions"][0]["result"][0]  # type: ignore[index]
        value = {
            **region["value"],
            "original_width": region["original_width"],
            "original_height": region["original_height"],
        }
        if n == 0:
            value["brushlabels"] = ["void"]
        rows.append(
            {
                **task["data"],  # type: ignore[dict-item]
                "id": n + 1,
                "label": [value],
                "annotator": "min@x.org",
                "annotation_id": n + 1,
            }
        )
    assert import_file(open_round, tmp_path, rows, "min.json") == 0
    assert "recorded 2 answers" in capsys.readouterr().out
    # The JSON export's user id, or the email Label Studio puts in created_username.
    annotate(tasks[2], [names[0]], completed_by=7)
    annotate(tasks[3], [names[0]], completed_by=8, created_username="ann@x.org, 8")
    assert import_file(open_round, tmp_path, tasks) == 0
    with Workspace.open(open_round) as ws:
        by = {
            (c["image_id"], c["segment_id"]): c["annotator"]
            for c in ws.corrections()
            if c["source"] == "manual"
        }
    keys = [(t["data"]["image_id"], t["data"]["segment_id"]) for t in tasks]  # type: ignore[index]
    assert [by[k] for k in keys[:4]] == [
        "min@x.org",
        "min@x.org",
        "label-studio-user-7",
        "ann@x.org",
    ]


def test_json_min_deleted_regions_and_several_annotations(
    open_round: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A task whose region was deleted is void; a task never annotated stays open; a task
    with two annotations (two JSON_MIN rows) gives one answer, the latest."""
    tasks = exported_tasks(open_round, tmp_path)
    with Workspace.open(open_round) as ws:
        names = list(ws.class_names)

    def row(n: int, **fields: object) -> dict[str, object]:
        return {**tasks[n]["data"], "id": n + 1, "annotator": "min@x.org", **fields}  # type: ignore[dict-item]

    region = tasks[2]["predictions"][0]["result"][0]  # type: ignore[index]
    early = {**region["value"], "brushlabels": [names[0]]}
    late = {**region["value"], "brushlabels": [names[1]]}
    rows = [
        row(0, annotation_id=10, updated_at="2026-01-01T10:00:00"),  # region deleted: void
        row(1, annotation_id=None),  # not annotated
        row(2, annotation_id=11, updated_at="2026-01-01T10:00:00", label=[early]),
        row(2, annotation_id=12, updated_at="2026-01-02T10:00:00", label=[late]),
    ]
    assert import_file(open_round, tmp_path, rows, "min.json") == 0
    assert "recorded 2 answers" in capsys.readouterr().out
    with Workspace.open(open_round) as ws:
        after = {
            (c["image_id"], c["segment_id"]): c["after"]
            for c in ws.corrections()
            if c["source"] == "manual"
        }
    keys = [(t["data"]["image_id"], t["data"]["segment_id"]) for t in tasks]  # type: ignore[index]
    assert after[keys[0]] == 255
    assert keys[1] not in after
    assert after[keys[2]] == 1


def test_image_paths_relative_to_the_document_root(open_round: Path, tmp_path: Path) -> None:
    with Workspace.open(open_round) as ws:
        image = Path(ws.samples[0].image_path).resolve()
    root = image.parents[2]
    tasks = exported_tasks(open_round, tmp_path, "--image-root", str(root))
    for task in tasks:
        url = str(task["data"]["image"])  # type: ignore[index]
        assert url.startswith("/data/local-files/?d=")
        relative = url.removeprefix("/data/local-files/?d=")
        assert not relative.startswith("/")
        assert (root / relative).is_file()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    args = ["export-queries", "-w", str(open_round), "--out", str(tmp_path / "x")]
    assert main([*args, "--image-root", str(outside)]) == 1
