from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from a2lc.data import load_dataset
from a2lc.data.synthetic import SyntheticPaths
from a2lc.errors import DataError, WorkspaceError
from a2lc.workspace import MIGRATIONS, SCHEMA_VERSION, Answer, Workspace, migrate
from a2lc.workspace.workspace import DB_NAME
from tests.fakes import write_gray


def create(synthetic: SyntheticPaths, path: Path) -> Workspace:
    dataset = load_dataset(synthetic.root, split=synthetic.split)
    return Workspace.create(
        path,
        dataset,
        segments_dir=synthetic.segments,
        labels_dir=synthetic.pseudo,
        show_progress=False,
    )


def test_create_records_dataset_and_segments(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    with create(synthetic, tmp_path / "ws") as ws:
        assert ws.num_classes == 8
        assert len(ws.samples) == 6
        assert ws.has_segments
        assert ws.has_ground_truth
        sample = ws.samples[0]
        assert sample.image_path == synthetic.root.resolve() / "images/train" / f"{sample.id}.png"
        assert not list((tmp_path / "ws").rglob("*.jpg"))
        assert not (tmp_path / "ws/images").exists()
        segments = ws.read_segments(sample.id)
        table = ws.segment_table(sample.id)
        assert table.ids.tolist() == sorted(set(np.unique(segments)) - {0})
        assert table.pixel_count.sum() == (segments > 0).sum()
        assert set(table.origin) == {"initial"}
        mode = ws._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        status = ws.status()
        assert status["schema_version"] == SCHEMA_VERSION
        assert status["segments"]["total"] == ws.num_segments() > 0


def test_rounds_answers_and_label_versions(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    with create(synthetic, tmp_path / "ws") as ws:
        image = ws.samples[1].id
        segments = ws.read_segments(image)
        before = ws.read_labels(image)
        ids = ws.segment_table(image).ids
        r = ws.start_round(
            [(image, int(ids[0]), 2.0), (image, int(ids[1]), 1.0)], strategy="abc", budget=2
        )
        assert r == 1
        assert ws.open_round() is not None
        with pytest.raises(WorkspaceError, match="round 1 is still open"):
            ws.start_round([], strategy="abc", budget=0)
        ws.record_answers(r, [Answer(image, int(ids[0]), 7, "ann")])
        assert [q.segment_id for q in ws.unanswered(r)] == [int(ids[1])]
        with pytest.raises(WorkspaceError, match="still has 1 unanswered"):
            ws.close_round(r)
        ws.record_answers(r, [Answer(image, int(ids[1]), None, "ann")])  # confirmed as is
        ws.close_round(r)
        after = ws.read_labels(image)
        assert (after[segments == ids[0]] == 7).all()
        np.testing.assert_array_equal(after[segments != ids[0]], before[segments != ids[0]])
        table = ws.segment_table(image)
        assert table.origin[:2].tolist() == ["manual", "manual"]
        assert table.assigned[:2].tolist() == [7, -1]
        manual = ws.manual_segments(before_round=2)
        assert list(manual) == [image]
        assert manual[image].tolist() == ids[:2].tolist()
        assert ws.manual_segments(before_round=1) == {}
        assert (ws.path / f"labels/round_001/{image}.png").is_file()
        with pytest.raises(WorkspaceError, match="cannot be queried again"):
            ws.start_round([(image, int(ids[0]), 1.0)], strategy="abc", budget=1)


def test_invalid_answers_change_nothing(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    with create(synthetic, tmp_path / "ws") as ws:
        image = ws.samples[0].id
        ids = ws.segment_table(image).ids
        r = ws.start_round([(image, int(ids[0]), 1.0)], strategy="abc", budget=1)
        bad = [
            ([Answer(image, int(ids[1]), 1)], "not an open query"),
            ([Answer(image, int(ids[0]), 8)], "class 8 is not 0..7 or 255"),
            ([Answer(image, int(ids[0]), 1), Answer(image, int(ids[0]), 2)], "not an open query"),
        ]
        for answers, message in bad:
            with pytest.raises(WorkspaceError, match=message):
                ws.record_answers(r, answers)
        assert ws.corrections() == []
        assert ws.count_unanswered(r) == 1
        ws.record_answers(r, [Answer(image, int(ids[0]), 255)])  # void is a valid answer
        assert (ws.read_labels(image)[ws.read_segments(image) == ids[0]] == 255).all()


def test_failed_transaction_rolls_back(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    with create(synthetic, tmp_path / "ws") as ws:
        image = ws.samples[0].id
        ids = ws.segment_table(image).ids
        queries = [(image, int(ids[0]), 1.0), ("no-such-image", 1, 0.5)]
        with pytest.raises(WorkspaceError, match="unknown segment"):
            ws.start_round(queries, strategy="abc", budget=2)
        assert ws.rounds() == []
        assert ws.queries(1) == []


def test_create_refuses_existing_folder(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    create(synthetic, tmp_path / "ws").close()
    db = (tmp_path / "ws" / DB_NAME).read_bytes()
    with pytest.raises(WorkspaceError, match="already exists"):
        create(synthetic, tmp_path / "ws")
    assert (tmp_path / "ws" / DB_NAME).read_bytes() == db


def test_bad_initial_maps_leave_nothing_behind(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    first, second = sorted(synthetic.segments.iterdir())[:2]
    first.unlink()
    write_gray(synthetic.pseudo / second.name, np.full((48, 64), 9))
    with pytest.raises(DataError) as info:
        create(synthetic, tmp_path / "ws")
    reasons = {Path(p.path).name: p.reason for p in info.value.problems}
    assert reasons == {first.name: "file is missing", second.name: reasons[second.name]}
    assert "invalid class ids (9)" in reasons[second.name]
    assert not (tmp_path / "ws").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".ws")] == []


def test_labels_outside_segments_become_ignore(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    name = sorted(synthetic.segments.iterdir())[0].name
    write_gray(synthetic.segments / name, np.zeros((48, 64)))
    with create(synthetic, tmp_path / "ws") as ws:
        assert (ws.read_labels(Path(name).stem) == 255).all()


def test_workspace_without_maps(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    dataset = load_dataset(synthetic.root, split="train")
    with Workspace.create(tmp_path / "ws", dataset, show_progress=False) as ws:
        assert not ws.has_segments
        with pytest.raises(WorkspaceError, match="no segments or initial labels yet") as caught:
            ws.read_segments(ws.samples[0].id)
        # The hint names the commands that fix it.
        assert "a2lc pseudo-label -w" in str(caught.value)
        assert "a2lc init --segments DIR --labels DIR" in str(caught.value)


def test_forward_migration_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    connection = sqlite3.connect(path, isolation_level=None)
    assert migrate(connection, target=1) == 1
    connection.execute("INSERT INTO meta(key, value) VALUES ('k', 'v')")
    assert migrate(connection) == SCHEMA_VERSION == len(MIGRATIONS)
    assert connection.execute("SELECT value FROM meta WHERE key = 'k'").fetchone()[0] == "v"
    connection.execute("INSERT INTO metrics(round, name, value) VALUES (0, 'data_miou', 0.5)")
    assert migrate(connection) == SCHEMA_VERSION  # idempotent


def test_annotator_sessions_move_from_meta_to_their_table(tmp_path: Path) -> None:
    import json

    connection = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    assert migrate(connection, target=6) == 6
    owners = {"alice": "a" * 64, "bob": "b" * 64}
    connection.execute(
        "INSERT INTO meta(key, value) VALUES ('annotate_sessions', ?)", (json.dumps(owners),)
    )
    assert migrate(connection) == SCHEMA_VERSION
    rows = connection.execute("SELECT annotator, session_sha256 FROM annotator_sessions").fetchall()
    assert dict(rows) == owners
    assert (
        connection.execute("SELECT 1 FROM meta WHERE key = 'annotate_sessions'").fetchone() is None
    )
    empty = sqlite3.connect(tmp_path / "empty.sqlite", isolation_level=None)
    assert migrate(empty) == SCHEMA_VERSION  # no sessions stored before: an empty table
    assert empty.execute("SELECT COUNT(*) FROM annotator_sessions").fetchone()[0] == 0


def test_newer_schema_is_refused(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    create(synthetic, tmp_path / "ws").close()
    connection = sqlite3.connect(tmp_path / "ws" / DB_NAME)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(WorkspaceError, match="newer than this a2lc supports"):
        Workspace.open(tmp_path / "ws")


def test_open_non_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="not an a2lc workspace"):
        Workspace.open(tmp_path)
