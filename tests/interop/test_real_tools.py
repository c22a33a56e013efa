"""a2lc's exports loaded by the tools people use, each in its own virtual environment.

`.ci/tools` creates them under `.tools/` (or `$A2LC_TOOLS`): datumaro (what CVAT uses
to import its formats) and FiftyOne. Without them these tests fail, never skip.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.data.synthetic import SyntheticPaths
from a2lc.interop.coco_panoptic import panoptic_paths
from a2lc.workspace import Workspace
from tests.interop.test_masks import fresh, same_partition

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("A2LC_TOOLS", REPO / ".tools"))
SCRIPTS = Path(__file__).parent / "tools"


def tool_python(name: str) -> Path:
    python = TOOLS / name / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"no {name} environment at {python.parent.parent}: run `bash .ci/tools`")
    return python


def run_tool(name: str, script: str, *args: object) -> str:
    result = subprocess.run(
        [str(tool_python(name)), str(SCRIPTS / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.fixture
def corrected(open_round: Path) -> Path:
    assert main(["correct", "-w", str(open_round)]) == 0
    return open_round


@pytest.mark.parametrize(
    ("fmt", "datumaro_format"), [("cvat", "voc_segmentation"), ("coco-panoptic", "coco_panoptic")]
)
def test_datumaro_reads_the_exports_and_a2lc_reads_datumaros(
    fmt: str, datumaro_format: str, corrected: Path, synthetic: SyntheticPaths, tmp_path: Path
) -> None:
    out, dumped, again = tmp_path / "export", tmp_path / "datumaro.npz", tmp_path / "again"
    units = ["--panoptic-segments", "segments"] if fmt == "coco-panoptic" else []
    assert main(["export", "-w", str(corrected), "--out", str(out), "--format", fmt, *units]) == 0
    print(run_tool("datumaro", "datumaro_check.py", datumaro_format, out, dumped, again))
    seen = np.load(dumped)
    names = [str(n) for n in seen["names"]]
    with Workspace.open(corrected, read_only=True) as ws:
        for sample in ws.samples:
            segments = ws.read_segments(sample.id)
            labels = ws.read_labels(sample.id, segments=segments)
            if fmt == "coco-panoptic":  # one class per segment: its majority label
                table = ws.segment_table(sample.id)
                lut = np.full(int(segments.max()) + 1, 255, np.int64)
                lut[table.ids] = table.label
                labels = np.where(segments > 0, lut[segments], 255).astype(np.uint8)
            theirs = seen[f"{sample.id}/labels"]
            named = np.full(theirs.shape, 255, np.int64)
            known = theirs >= 0
            named[known] = [
                ws.class_names.index(names[v]) if names[v] in ws.class_names else 255
                for v in theirs[known]
            ]
            np.testing.assert_array_equal(named, labels, err_msg=f"{fmt} {sample.id}: classes")
            ours = np.where(labels == 255, 0, segments)
            assert same_partition(ours, seen[f"{sample.id}/instances"]), f"{fmt} {sample.id}"
    # datumaro's own export of it comes back into a2lc as the same labels and segments.
    source = (
        ["--cvat", str(again)]
        if fmt == "cvat"
        else ["--coco-panoptic", str(panoptic_paths(again, "train")[0])]
    )
    target = fresh(synthetic, tmp_path / "imported")
    assert main(["import-labels", "-w", str(target), *source]) == 0
    with Workspace.open(corrected) as a, Workspace.open(target) as b:
        for sample in a.samples:
            instances = seen[f"{sample.id}/instances"]
            assert same_partition(b.read_segments(sample.id), instances)
            # Same classes, pixel for pixel, as datumaro itself read them.
            theirs = seen[f"{sample.id}/labels"]
            expected = np.full(theirs.shape, 255, np.int64)
            known = theirs >= 0
            expected[known] = [
                a.class_names.index(names[v]) if names[v] in a.class_names else 255
                for v in theirs[known]
            ]
            np.testing.assert_array_equal(b.read_initial_labels(sample.id), expected)


def test_datumaro_reads_the_cvat_upload_archives(corrected: Path, tmp_path: Path) -> None:
    """What CVAT's upload dialog takes: the Segmentation mask 1.1 zip and the CVAT for
    images 1.1 zip, each read by datumaro (CVAT's importer) as the workspace has them."""
    import zipfile

    from a2lc.interop.cvat import MASK_ZIP, UPLOAD, XML_ZIP

    out = tmp_path / "cvat"
    assert main(["export", "-w", str(corrected), "--out", str(out), "--format", "cvat"]) == 0
    for archive, datumaro_format in ((MASK_ZIP, "voc_segmentation"), (XML_ZIP, "cvat")):
        unpacked = tmp_path / archive
        with zipfile.ZipFile(out / UPLOAD / archive) as handle:
            handle.extractall(unpacked)
        if archive == XML_ZIP:  # the task's images are in CVAT already; datumaro wants them here
            with Workspace.open(corrected, read_only=True) as ws:
                for sample in ws.samples:
                    image = Path(sample.image_path)
                    (unpacked / "images").mkdir(exist_ok=True)
                    (unpacked / "images" / image.name).symlink_to(image.resolve())
        dumped = tmp_path / f"{archive}.npz"
        print(
            run_tool(
                "datumaro",
                "datumaro_check.py",
                datumaro_format,
                unpacked,
                dumped,
                tmp_path / f"{archive}-again",
            )
        )
        seen = np.load(dumped)
        names = [str(n) for n in seen["names"]]
        with Workspace.open(corrected, read_only=True) as ws:
            for sample in ws.samples:
                segments = ws.read_segments(sample.id)
                labels = ws.read_labels(sample.id, segments=segments)
                theirs = seen[f"{sample.id}/labels"]
                named = np.full(theirs.shape, 255, np.int64)
                known = theirs >= 0
                named[known] = [
                    ws.class_names.index(names[v]) if names[v] in ws.class_names else 255
                    for v in theirs[known]
                ]
                np.testing.assert_array_equal(named, labels, err_msg=f"{archive} {sample.id}")
                # One mask per segment and class: the segments, split where classes differ.
                pieces = np.where(labels == 255, 0, segments.astype(np.int64) * 256 + labels + 1)
                assert same_partition(pieces, seen[f"{sample.id}/instances"]), archive


def test_fiftyone_reads_the_export_with_its_own_importer(corrected: Path, tmp_path: Path) -> None:
    out, dumped = tmp_path / "fo", tmp_path / "fiftyone.npz"
    assert main(["export", "-w", str(corrected), "--out", str(out), "--format", "fiftyone"]) == 0
    print(run_tool("fiftyone", "fiftyone_check.py", out, dumped))
    seen = np.load(dumped)
    with Workspace.open(corrected, read_only=True) as ws:
        targets = [f"{c.id}:{c.name}" for c in ws.dataset.classes]
        assert [str(t) for t in seen["targets"]] == targets
        assert sorted(k for k in seen.files if k != "targets") == sorted(s.id for s in ws.samples)
        for sample in ws.samples:
            # Class ids and 255 survive as they are (not palette colours read as RGB).
            np.testing.assert_array_equal(seen[sample.id], ws.read_labels(sample.id))


def test_pycocotools_agrees_on_areas_and_boxes(corrected: Path, tmp_path: Path) -> None:
    out = tmp_path / "pan"
    assert (
        main(["export", "-w", str(corrected), "--out", str(out), "--format", "coco-panoptic"]) == 0
    )
    json_path, folder = panoptic_paths(out, "train")
    print(run_tool("datumaro", "coco_check.py", json_path, folder))  # datumaro brings pycocotools


def test_our_brush_encoding_is_label_studios_byte_for_byte(tmp_path: Path) -> None:
    """Every mask, runs around the 65,536-value chunk and single values included."""
    rng = np.random.default_rng(0)
    height, width = 240, 320
    masks = {
        "empty": np.zeros((height, width), bool),
        "full": np.ones((height, width), bool),
        "noise": rng.random((height, width)) < 0.3,
        "tiny": rng.random((3, 2)) < 0.5,
    }
    for pixels in (16383, 16384, 16385, 32768, 32769, 50000):  # 4 values a pixel
        run = np.zeros(height * width, bool)
        run[7 : 7 + pixels] = True
        masks[f"run{pixels}"] = run.reshape(height, width)
    yy, xx = np.mgrid[:height, :width]
    for k in range(10):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(1, 200)
        masks[f"disc{k}"] = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    np.savez(tmp_path / "masks.npz", **masks)  # type: ignore[arg-type]
    out = tmp_path / "out.json"
    print(run_tool("label-studio", "ls_rle_encode.py", tmp_path / "masks.npz", REPO / "src", out))
    measured = json.loads(out.read_text())
    assert len(measured["identical"]) == len(masks)
    assert all(measured["identical"]), [
        n for n, same in zip(measured["masks"], measured["identical"], strict=True) if not same
    ]


def test_label_studios_converter_reads_and_writes_our_brushes(
    open_round: Path, tmp_path: Path
) -> None:
    from a2lc.interop.rle import decode_mask

    out, dumped = tmp_path / "ls", tmp_path / "rle.npz"
    assert main(["export-queries", "-w", str(open_round), "--out", str(out)]) == 0
    print(run_tool("label-studio", "ls_rle_check.py", out / "tasks.json", dumped))
    seen = np.load(dumped)
    tasks = json.loads((out / "tasks.json").read_text())
    with Workspace.open(open_round, read_only=True) as ws:
        for n, task in enumerate(tasks):
            image_id, segment_id = task["data"]["image_id"], task["data"]["segment_id"]
            segment = ws.read_segments(image_id) == segment_id
            np.testing.assert_array_equal(seen[f"decoded/{n}"], segment)
            height, width = segment.shape
            theirs = seen[f"encoded/{n}"].tolist()
            np.testing.assert_array_equal(decode_mask(theirs, height=height, width=width), segment)
            assert theirs == task["predictions"][0]["result"][0]["value"]["rle"]  # byte-identical
