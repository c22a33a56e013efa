"""CVAT masks and COCO panoptic: export a workspace, import it as initial labels, compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from a2lc.cli import main
from a2lc.data.synthetic import SyntheticPaths
from a2lc.workspace import Workspace


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two segment maps group the pixels identically (ids may differ)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@pytest.fixture
def corrected(open_round: Path) -> Path:
    """A workspace after one corrected round (some segments relabelled)."""
    assert main(["correct", "-w", str(open_round)]) == 0
    return open_round


def fresh(synthetic: SyntheticPaths, path: Path) -> Path:
    assert main(["init", "-w", str(path), "--data", str(synthetic.root)]) == 0
    return path


@pytest.mark.parametrize("fmt", ["cvat", "coco-panoptic"])
def test_export_import_round_trip(
    fmt: str, corrected: Path, synthetic: SyntheticPaths, tmp_path: Path
) -> None:
    out = tmp_path / fmt
    assert main(["export", "-w", str(corrected), "--out", str(out), "--format", fmt]) == 0
    target = fresh(synthetic, tmp_path / "imported")
    source = (
        ["--cvat", str(out)] if fmt == "cvat" else ["--coco-panoptic", str(out / "panoptic.json")]
    )
    assert main(["import-labels", "-w", str(target), *source]) == 0
    with Workspace.open(corrected) as a, Workspace.open(target) as b:
        assert b.meta("initial_source") == fmt
        for sample in a.samples:
            segments_a = a.read_segments(sample.id)
            labels_a = a.read_labels(sample.id, segments=segments_a)
            segments_b, labels_b = b.read_segments(sample.id), b.read_initial_labels(sample.id)
            if fmt == "cvat":
                # Pixel labels survive exactly; so do the segments.
                np.testing.assert_array_equal(labels_b, labels_a)
                assert same_partition(segments_a, segments_b)
            else:
                # One class per segment: the segment's majority label; void-only segments drop out.
                ids = np.unique(segments_a[segments_a > 0])
                for i in ids:
                    inside = labels_a[segments_a == i]
                    valid = inside[inside != 255]
                    if valid.size:
                        assert (labels_b[segments_a == i] == np.bincount(valid).argmax()).all()
                    else:
                        assert (segments_b[segments_a == i] == 0).all()
                assert same_partition(np.where(labels_b == 255, 0, segments_a), segments_b)


def test_cvat_export_layout(corrected: Path, tmp_path: Path) -> None:
    out = tmp_path / "cvat"
    main(["export", "-w", str(corrected), "--out", str(out), "--format", "cvat"])
    lines = (out / "labelmap.txt").read_text().splitlines()
    assert lines[0] == "# label:color_rgb:parts:actions"
    assert lines[1] == "background:0,0,0::"
    assert lines[2] == "sky:70,130,180::"
    ids = (out / "ImageSets" / "Segmentation" / "default.txt").read_text().split()
    assert len(ids) == 6
    with Image.open(out / "SegmentationClass" / f"{ids[0]}.png") as image:
        assert image.mode == "P"


def test_cvat_import_without_instances_and_bad_input(
    corrected: Path, synthetic: SyntheticPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cvat"
    main(["export", "-w", str(corrected), "--out", str(out), "--format", "cvat"])
    for path in (out / "SegmentationObject").iterdir():
        path.unlink()
    target = fresh(synthetic, tmp_path / "imported")
    assert main(["import-labels", "-w", str(target), "--cvat", str(out)]) == 0
    with Workspace.open(target) as ws:
        sample = ws.samples[0]
        segments, labels = ws.read_segments(sample.id), ws.read_initial_labels(sample.id)
        for i in np.unique(segments[segments > 0]):
            assert len(np.unique(labels[segments == i])) == 1  # connected regions of one class
    # An unknown label name, and a colour outside the label map: clear errors, nothing written.
    other = fresh(synthetic, tmp_path / "other")
    text = (out / "labelmap.txt").read_text()
    (out / "labelmap.txt").write_text(text.replace("sky:", "heaven:"))
    assert main(["import-labels", "-w", str(other), "--cvat", str(out)]) == 1
    assert "label 'heaven' is not a class of the workspace" in capsys.readouterr().err
    (out / "labelmap.txt").write_text(text)
    first = sorted((out / "SegmentationClass").iterdir())[-1]
    Image.fromarray(np.full((48, 64, 3), 7, dtype=np.uint8)).save(first)
    assert main(["import-labels", "-w", str(other), "--cvat", str(out)]) == 1
    assert "colour [7, 7, 7] is not in labelmap.txt" in capsys.readouterr().err
    with Workspace.open(other) as ws:
        assert not ws.has_segments
        assert not (other / "segments").exists() or not any((other / "segments").iterdir())


def test_panoptic_json_and_bad_categories(
    corrected: Path, synthetic: SyntheticPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pan"
    main(["export", "-w", str(corrected), "--out", str(out), "--format", "coco-panoptic"])
    document = json.loads((out / "panoptic.json").read_text())
    assert [c["name"] for c in document["categories"]][:2] == ["sky", "building"]
    annotation = document["annotations"][0]
    info = annotation["segments_info"][0]
    with Image.open(out / "panoptic" / annotation["file_name"]) as image:
        rgb = np.asarray(image.convert("RGB")).astype(np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    assert (ids == info["id"]).sum() == info["area"]
    ys, xs = np.nonzero(ids == info["id"])
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert info["bbox"] == [xs.min(), ys.min(), width, height]
    document["categories"][0]["name"] = "heaven"
    (out / "panoptic.json").write_text(json.dumps(document))
    target = fresh(synthetic, tmp_path / "imported")
    assert (
        main(["import-labels", "-w", str(target), "--coco-panoptic", str(out / "panoptic.json")])
        == 1
    )
    assert "category 'heaven' is not a class" in capsys.readouterr().err
    for text, message in (("{not json", "not a readable JSON file"), ("[]", "not a COCO panoptic")):
        (out / "panoptic.json").write_text(text)
        args = ["import-labels", "-w", str(target), "--coco-panoptic", str(out / "panoptic.json")]
        assert main(args) == 1
        assert f"{out / 'panoptic.json'}: {message}" in capsys.readouterr().err
