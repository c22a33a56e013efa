"""FiftyOne export with each segment's P(label wrong) from the latest model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from a2lc.cli import main
from a2lc.interop.fiftyone import segment_wrong_probability
from a2lc.rounds import run_rounds
from tests.test_rounds import config, make_workspace


def test_segment_wrong_probability() -> None:
    probs = np.zeros((2, 2, 3))
    probs[0] = [[0.9, 0.9, 0.2], [0.5, 0.5, 0.5]]
    probs[1] = 1 - probs[0]
    labels = np.array([[0, 0, 1], [255, 255, 255]])
    segments = np.array([[1, 1, 2], [3, 3, 0]])
    ids, wrong = segment_wrong_probability(probs, labels, segments)
    assert ids.tolist() == [1, 2, 3]
    np.testing.assert_allclose(wrong, [0.1, 0.2, 1.0])  # segment 3: no labelled pixel


def test_fiftyone_export_with_scores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with make_workspace(tmp_path) as ws:
        run_rounds(ws, config(rounds=1), show_progress=False)
        segments = {s.id: ws.read_segments(s.id) for s in ws.samples}
    workspace, out = str(tmp_path / "ws"), tmp_path / "fo"

    def files() -> list[Path]:  # SQLite's own -wal/-shm files aside
        root = tmp_path / "ws"
        return sorted(p.relative_to(root) for p in root.rglob("*") if "sqlite-" not in p.name)

    before = files()
    assert (
        main(["export", "-w", workspace, "--out", str(out), "--format", "fiftyone", "--scores"])
        == 0
    )
    assert files() == before  # the model's feature cache went to a temporary folder
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores) == set(segments)
    for image_id, segment_map in segments.items():
        values = scores[image_id]
        ids = np.unique(segment_map[segment_map > 0])
        assert sorted(int(k) for k in values) == ids.tolist()
        assert all(0.0 <= v <= 1.0 for v in values.values())
        with Image.open(out / "scores" / f"{image_id}.png") as image:
            heat = np.asarray(image)
        for segment_id, value in values.items():
            inside = heat[segment_map == int(segment_id)]
            assert (inside == round(255 * value)).all()
    assert main(["export", "-w", workspace, "--out", str(out), "--format", "cvat", "--scores"]) == 1
    assert "--scores goes with --format fiftyone" in capsys.readouterr().err
