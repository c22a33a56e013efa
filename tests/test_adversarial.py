"""Hostile inputs from the adversarial pass (issue 12): each one gets one clear error, exit
code 1, and nothing is written. Atomic imports, the web app and the feature cache have
their own modules (tests/workspace/test_initial_import.py, tests/web/test_security.py,
tests/models/test_models.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.data import load_dataset
from a2lc.data.probs import load_probabilities
from a2lc.data.synthetic import SyntheticPaths
from a2lc.errors import DataError, WorkspaceError
from a2lc.interop.coco_panoptic import panoptic_paths
from a2lc.workspace import Workspace
from a2lc.workspace.workspace import DB_NAME
from tests.fakes import make_voc_tree
from tests.web.test_app import snapshot


def new_workspace(synthetic: SyntheticPaths, tmp_path: Path) -> Path:
    """A workspace with the synthetic dataset's segments and labels, made by the CLI."""
    path = tmp_path / "ws"
    init = ["init", "-w", str(path), "--data", str(synthetic.root)]
    assert (
        main([*init, "--segments", str(synthetic.segments), "--labels", str(synthetic.pseudo)]) == 0
    )
    return path


def test_voc_ids_that_leave_their_folder_are_refused(tmp_path: Path) -> None:
    make_voc_tree(tmp_path / "voc")
    listing = (
        tmp_path / "voc" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt"
    )
    listing.write_text("2007_000032\n../../OUTSIDE/evil\n..\nsub\\\\dir\n")
    with pytest.raises(DataError) as caught:
        load_dataset(tmp_path / "voc", split="train")
    message = str(caught.value)
    assert str(listing) in message
    assert "'../../OUTSIDE/evil' contains a path separator" in message
    assert "'..' is not a file name" in message
    out = tmp_path / "ws"
    assert main(["init", "-w", str(out), "--data", str(tmp_path / "voc")]) == 1
    assert not out.exists()
    assert not (tmp_path / "OUTSIDE").exists()


def damaged_panoptic(ws: Workspace, tmp_path: Path, damage: Callable[[Any], object]) -> Path:
    """The workspace exported as COCO panoptic, its JSON then changed by ``damage``."""
    from a2lc.interop.coco_panoptic import export_panoptic, panoptic_paths

    export_panoptic(ws, tmp_path / "pan")
    document, _ = panoptic_paths(tmp_path / "pan", ws.dataset.split)
    data = json.loads(document.read_text())
    damage(data)
    document.write_text(json.dumps(data))
    return document


def test_coco_panoptic_file_names_stay_in_their_folder(
    synthetic: SyntheticPaths, tmp_path: Path
) -> None:
    from a2lc.interop.coco_panoptic import read_panoptic

    ws_path = new_workspace(synthetic, tmp_path)
    with Workspace.open(ws_path) as ws:
        document = damaged_panoptic(
            ws, tmp_path, lambda d: d["annotations"][0].update(file_name="../../escape.png")
        )
        before = snapshot(ws_path)
        with pytest.raises(DataError, match="must be a file name inside"):
            ws.set_initial_maps(read_panoptic(document, ws), source="coco")
    assert snapshot(ws_path) == before


def test_an_empty_database_is_not_silently_reinitialised(open_round: Path) -> None:
    (open_round / DB_NAME).write_bytes(b"")
    for name in ("-wal", "-shm"):
        (open_round / f"{DB_NAME}{name}").unlink(missing_ok=True)
    with pytest.raises(WorkspaceError, match="empty or not an a2lc database"):
        Workspace.open(open_round)
    assert main(["status", "-w", str(open_round)]) == 1
    assert (open_round / DB_NAME).read_bytes() == b""


def test_a_file_that_is_not_a_database_is_refused(open_round: Path) -> None:
    (open_round / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    for name in ("-wal", "-shm"):
        (open_round / f"{DB_NAME}{name}").unlink(missing_ok=True)
    assert main(["status", "-w", str(open_round)]) == 1


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ("nan", "finite"),
        ("inf", "finite"),
        ("negative", "≥ 0"),
        ("logits", "sum to 1"),
    ],
)
def test_bad_probability_values_are_refused(tmp_path: Path, values: str, reason: str) -> None:
    probs = np.full((3, 4, 5), 1 / 3, dtype=np.float32)
    if values == "nan":
        probs[0, 1, 1] = np.nan
    elif values == "inf":
        probs[2, 0, 0] = np.inf
    elif values == "negative":
        probs[:, 2, 2] = [-0.5, 1.0, 0.5]
    else:
        probs = probs * 7 - 1
    np.save(tmp_path / "p.npy", probs)
    with pytest.raises(DataError, match=reason):
        load_probabilities(tmp_path / "p.npy", num_classes=3, shape=(4, 5))


def test_a_huge_probability_header_is_refused_before_allocation(tmp_path: Path) -> None:
    path = tmp_path / "huge.npy"
    header = {"descr": "<f4", "fortran_order": False, "shape": (19, 2_000_000, 2_900_000)}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 64)
    with pytest.raises(DataError, match="does not match"):
        load_probabilities(path, num_classes=19, shape=(1024, 2048))
    npz = tmp_path / "huge.npz"
    import zipfile

    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("probs.npy", path.read_bytes())
    with pytest.raises(DataError, match="does not match"):
        load_probabilities(npz, num_classes=19, shape=(1024, 2048))


def test_probabilities_through_score_are_checked(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    ws_path = new_workspace(synthetic, tmp_path)
    bad = tmp_path / "probs"
    bad.mkdir()
    for path in synthetic.probs.glob("*.npy"):
        probs = np.load(path)
        np.save(bad / path.name, probs - 0.5)  # shifted: negative, sums off
    before = snapshot(ws_path)
    assert main(["score", "-w", str(ws_path), "--probs", str(bad), "--budget", "3"]) == 1
    assert snapshot(ws_path) == before


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--lease-seconds", "inf"),
        ("--lease-seconds", "1e308"),
        ("--lease-seconds", "nan"),
        ("--lease-seconds", "0"),
        ("--port", "70000"),
        ("--port", "0"),
    ],
)
def test_annotate_options_out_of_range(
    open_round: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    before = snapshot(open_round)
    assert main(["annotate", "-w", str(open_round), option, value]) == 1
    assert option in capsys.readouterr().err
    assert snapshot(open_round) == before


def test_exports_are_readable_by_others(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    import os
    import stat

    ws_path = new_workspace(synthetic, tmp_path)
    old = os.umask(0o022)
    try:
        assert main(["export", "-w", str(ws_path), "--out", str(tmp_path / "out")]) == 0
    finally:
        os.umask(old)
    files = list((tmp_path / "out").iterdir())
    assert any(f.name == "classes.json" for f in files)
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o044 == 0o044, f"{path.name}: {oct(mode)}"


def test_automatic_changes_and_their_metrics_are_one_transaction(open_round: Path) -> None:
    from a2lc.steps.answers import answer_with_oracle

    with Workspace.open(open_round) as ws:
        answer_with_oracle(ws, 1, show_progress=False)
        manual = ws.queries(1)[0]
        before = snapshot(open_round)
        with pytest.raises(WorkspaceError, match="corrected manually"):
            ws.record_auto_corrections(
                1, [(manual.image_id, manual.segment_id, 0)], metrics={"lcm_changed": 1.0}
            )
        assert "lcm_changed" not in ws.metrics().get(1, {})
        assert snapshot(open_round) == before


def test_deeply_nested_json_is_refused_cleanly(tmp_path: Path) -> None:
    from a2lc._json import read_json
    from a2lc.data.readers import read_classes_json

    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="nested too deeply"):
        read_json(path)
    with pytest.raises(DataError, match="nested too deeply"):
        read_classes_json(path)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"id": 1.7, "name": "Building"}, "integer 'id'"),
        ({"id": "1", "name": "Building"}, "integer 'id'"),
        ({"id": 1, "name": "Sky"}, "unique"),
        ({"id": 1, "name": "Building", "color": [1.5, 2, 3]}, "color"),
    ],
)
def test_classes_json_is_never_guessed(
    tmp_path: Path, entry: dict[str, object], reason: str
) -> None:
    from a2lc.data.readers import read_classes_json

    path = tmp_path / "classes.json"
    path.write_text(json.dumps([{"id": 0, "name": "Sky"}, entry]))
    with pytest.raises(DataError, match=reason):
        read_classes_json(path)


def test_decompression_bombs_and_truncated_images_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from a2lc.data.images import read_image
    from a2lc.data.maps import image_size, read_png_array

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64×64 is now a "bomb"
    for read in (read_image, read_png_array, image_size):
        with pytest.raises(DataError, match="too large to decode safely"):
            read(path)
    monkeypatch.undo()
    cut = tmp_path / "cut.jpg"
    Image.fromarray((np.random.default_rng(0).random((50, 60, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "whole.jpg"
    )
    data = (tmp_path / "whole.jpg").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        image_size(cut)
    assert image_size(tmp_path / "whole.jpg") == (60, 50)


def test_segment_ids_beyond_16_bits_are_a_clear_error(open_round: Path) -> None:
    with Workspace.open(open_round) as ws:
        sample = ws.samples[0]
        segments = np.full(sample.shape, 70_000, dtype=np.int64)
        labels = np.zeros(sample.shape, dtype=np.uint8)
        ws.connection.execute("DELETE FROM queries")
        ws.connection.execute("DELETE FROM rounds")
        before = snapshot(open_round)
        with pytest.raises(DataError, match="65535"):
            ws.set_initial_maps([(sample.id, segments, labels)], source="test")
        assert snapshot(open_round) == before


def test_a_damaged_checkpoint_is_named(tmp_path: Path) -> None:
    from a2lc.models.config import ModelConfig
    from a2lc.models.training import load_checkpoint, save_checkpoint
    from a2lc.models.zoo import build_model

    model = build_model(ModelConfig(num_classes=3, weights="none"))
    save_checkpoint(tmp_path / "weights.pt", model, trainable_only=True)
    data = (tmp_path / "weights.pt").read_bytes()
    (tmp_path / "weights.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(WorkspaceError, match=r"weights\.pt is truncated"):
        load_checkpoint(tmp_path / "weights.pt", model, trainable_only=True)


def test_a_damaged_feature_cache_file_is_recomputed(tmp_path: Path) -> None:
    import torch

    from a2lc.models.config import ModelConfig
    from a2lc.models.training import FeatureCache
    from a2lc.models.zoo import build_model

    image = np.random.default_rng(0).integers(0, 255, (32, 48, 3)).astype(np.uint8)
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=2, weights="none"))
    cache = FeatureCache(tmp_path, model, lambda _: image, device=torch.device("cpu"))
    good = cache.get("a", shape=(32, 48))
    cache.path("a").write_bytes(cache.path("a").read_bytes()[:100])
    again = FeatureCache(tmp_path, model, lambda _: image, device=torch.device("cpu"))
    for x, y in zip(good, again.get("a", shape=(32, 48)), strict=True):
        assert torch.equal(x, y)


def test_database_failures_are_one_line(
    open_round: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from a2lc.workspace import Workspace as WorkspaceClass

    def full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(WorkspaceClass, "record_answers", full)
    assert main(["correct", "-w", str(open_round)]) == 1
    err = capsys.readouterr().err
    assert "database or disk is full" in err
    assert "Traceback" not in err

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(30, "Read-only file system", str(open_round / "x.png"))

    monkeypatch.setattr(WorkspaceClass, "record_answers", read_only)
    assert main(["correct", "-w", str(open_round)]) == 1
    assert "Read-only file system" in capsys.readouterr().err


def test_python_dash_m_and_a_closed_pipe(open_round: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "a2lc", "status", "-w", str(open_round), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["segments"]["total"] > 0
    # The reader is gone before a2lc writes (`a2lc status --json | head` that already quit).
    process = subprocess.Popen(
        [sys.executable, "-m", "a2lc", "status", "-w", str(open_round), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate()
    assert "Traceback" not in err
    assert "BrokenPipe" not in err


def _label_studio_export(open_round: Path, tmp_path: Path) -> list[dict[str, object]]:
    out = tmp_path / "ls"
    assert main(["export-queries", "-w", str(open_round), "--out", str(out)]) == 0
    tasks = json.loads((out / "tasks.json").read_text())
    for task in tasks:  # every query answered by keeping the prefilled region
        task["annotations"] = [{"id": 1, "result": task["predictions"][0]["result"]}]
    return list(tasks)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda t: t["data"].update(segment_id=7.9), "segment_id an integer"),
        (lambda t: t["data"].update(segment_id=True), "segment_id an integer"),
        (lambda t: t["data"].update(image_id=["x"]), "image_id must be a string"),
        (lambda t: t.update(annotations="oops"), "'annotations' must be a list"),
        (lambda t: t["annotations"][0].update(result="x"), "'result' must be a list"),
        (
            lambda t: t["annotations"][0]["result"][0]["value"].update(rle=[1, 2, 3, 4, 5, 6]),
            "does not decode",
        ),
        (
            lambda t: t["annotations"][0]["result"][0].update(original_width=9999),
            "drawn on a 9999",
        ),
    ],
)
def test_label_studio_exports_are_never_guessed(
    open_round: Path, tmp_path: Path, damage: object, reason: str
) -> None:
    tasks = _label_studio_export(open_round, tmp_path)
    damage(tasks[0])  # type: ignore[operator]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    before = snapshot(open_round)
    assert main(["import-answers", "-w", str(open_round), "--label-studio", str(path)]) == 1
    assert snapshot(open_round) == before
    from a2lc.interop.label_studio import read_answers

    with Workspace.open(open_round) as ws, pytest.raises(DataError, match=reason):
        read_answers(ws, path)


def test_a_hostile_rle_header_is_refused_before_allocation() -> None:
    from a2lc.interop.rle import decode_mask

    header = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]  # claims 4 billion values
    with pytest.raises(ValueError, match="expected 4×4×4"):
        decode_mask(header, height=4, width=4)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: d.update(categories="x"), "'categories' must be a list"),
        (lambda d: d["categories"][0].update(id="1"), "integer 'id'"),
        (lambda d: d["annotations"][0].pop("segments_info"), "list 'segments_info'"),
        (lambda d: d["annotations"][0]["segments_info"][0].update(category_id=1.5), "category_id"),
        (lambda d: d["annotations"][0].update(file_name=7), "string 'file_name'"),
    ],
)
def test_malformed_coco_panoptic_is_refused(
    synthetic: SyntheticPaths, tmp_path: Path, damage: object, reason: str
) -> None:
    from a2lc.interop.coco_panoptic import read_panoptic

    ws_path = new_workspace(synthetic, tmp_path)
    with Workspace.open(ws_path) as ws:
        document = damaged_panoptic(ws, tmp_path, damage)  # type: ignore[arg-type]
        with pytest.raises(DataError, match=reason):
            list(read_panoptic(document, ws))


def test_cvat_labelmaps_with_repeated_colours_are_refused(tmp_path: Path) -> None:
    from a2lc.interop.cvat import read_labelmap

    path = tmp_path / "labelmap.txt"
    path.write_text("# label:color_rgb:parts:actions\nSky:128,128,128::\nRoad:128,128,128::\n")
    with pytest.raises(DataError, match="already 'Sky'"):
        read_labelmap(path, ["Sky", "Road"])
    path.write_text("Sky:128,128,999::\n")
    with pytest.raises(DataError, match=r"0\.\.255"):
        read_labelmap(path, ["Sky", "Road"])


def test_file_names_that_are_not_utf8_are_named(tmp_path: Path) -> None:
    import os

    from tests.fakes import make_folder_tree

    make_folder_tree(tmp_path / "data")
    images = tmp_path / "data" / "images" / "train"
    first = sorted(images.iterdir())[0]
    os.rename(first, os.path.join(os.fsencode(images), b"bad\xff" + os.fsencode(first.suffix)))
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_dataset(tmp_path / "data", split="train")
    assert main(["init", "-w", str(tmp_path / "ws"), "--data", str(tmp_path / "data")]) == 1


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (SQLite's -wal/-shm files aside)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "sqlite-" not in p.name
    }


def test_outputs_never_land_in_the_workspace_state(
    open_round: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #24: a typo in --out must not replace the database or the labels."""
    w = str(open_round)
    before = _tree(open_round)
    link = tmp_path / "alias"
    link.symlink_to(open_round)  # another name for the same folder
    attempts = [
        ["report", "-w", w, "--out", f"{w}/a2lc.sqlite"],
        ["report", "-w", w, "--out", f"{w}/a2lc.lock"],
        ["report", "-w", w, "--out", str(link / "a2lc.sqlite")],
        ["export", "-w", w, "--out", f"{w}/labels/round_000"],
        ["export", "-w", w, "--out", w],
        ["export", "-w", w, "--out", f"{w}/segments", "--format", "cvat"],
        ["export-queries", "-w", w, "--out", f"{w}/models"],
        ["run", "-w", w, "--oracle", "human", "--report", f"{w}/a2lc.sqlite"],
    ]
    for argv in attempts:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "inside the workspace's own state" in err, argv
        assert "Traceback" not in err
        assert _tree(open_round) == before, argv
    # A new name directly in the workspace folder is fine.
    assert main(["report", "-w", w, "--out", f"{w}/report.html"]) == 0


def test_find_label_issues_refuses_probabilities_that_are_not(tmp_path: Path) -> None:
    """Issue #24: NaN, inf, negative, unnormalised or non-numeric probabilities."""
    from a2lc import find_label_issues
    from a2lc.errors import DataError

    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 3, (8, 8)), rng.integers(0, 3, (8, 8))]
    good = rng.random((3, 8, 8)).astype(np.float32)
    good /= good.sum(axis=0)
    assert find_label_issues(labels, [good, good])  # the honest case works

    def some_nan() -> np.ndarray:
        bad = good.copy()
        bad[0, 0, 0] = np.nan
        return bad

    cases = {
        "all NaN": (np.full_like(good, np.nan), "finite"),
        "some NaN": (some_nan(), "finite"),
        "inf": (np.where(good > 0.5, np.inf, good).astype(np.float32), "finite"),
        "negative": (good - 0.1, "≥ 0"),
        "times five": (good * 5, "sum to 1"),
        "integers": (np.ones((3, 8, 8), dtype=np.int64), "float"),
        "objects": (good.astype(object), "float"),
    }
    for name, (bad, message) in cases.items():
        with pytest.raises(DataError, match=message) as caught:
            find_label_issues(labels, [good, bad])
        assert "pred_probs[1] (image 1)" in str(caught.value), name


def test_a_file_size_limit_is_one_line(
    open_round: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue #24: `ulimit -f` below the largest file written (EFBIG): one line."""
    import errno

    import a2lc.report

    out = tmp_path / "report.html"

    def too_large(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EFBIG, "File too large", str(out))

    monkeypatch.setattr(a2lc.report, "workspace_report", too_large)
    assert main(["report", "-w", str(open_round), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"error: {out}: File too large" in err
    assert "Traceback" not in err


def test_more_hostile_inputs_are_one_line(
    corrected_cvat: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue #24: a labelmap that is only a comment, a panoptic PNG claiming 100000×100000
    pixels, and --seed-images that is empty or a file that is not an id list."""
    workspace, cvat = corrected_cvat
    target = tmp_path / "target"
    data = Workspace.open(workspace, read_only=True)
    root = data.meta("dataset_root")
    data.close()
    assert main(["init", "-w", str(target), "--data", str(root)]) == 0
    capsys.readouterr()
    (cvat / "labelmap.txt").write_text("# label:color_rgb:parts:actions\n")
    assert main(["import-labels", "-w", str(target), "--cvat", str(cvat)]) == 1
    err = capsys.readouterr().err
    assert "labelmap.txt: names no label" in err
    assert "Traceback" not in err
    # A panoptic PNG whose header claims 100000×100000 pixels.
    pan = tmp_path / "pan"
    assert (
        main(["export", "-w", str(workspace), "--out", str(pan), "--format", "coco-panoptic"]) == 0
    )
    json_path, folder = panoptic_paths(pan, "train")
    first = sorted(folder.iterdir())[0]
    first.write_bytes(_png_claiming(100_000, 100_000))
    capsys.readouterr()
    assert main(["import-labels", "-w", str(target), "--coco-panoptic", str(json_path)]) == 1
    err = capsys.readouterr().err
    assert f"{first}: image too large to decode safely" in err
    assert "Traceback" not in err
    with Workspace.open(target, read_only=True) as ws:
        assert not ws.has_segments  # nothing written
    for value, message in (("", "empty"), (" , ", "empty"), ("@/etc/passwd", "not an image id")):
        assert main(["pseudo-label", "-w", str(target), "--seed-images", value]) == 2
        err = capsys.readouterr().err
        assert message in err, value
        assert "root:" not in err


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk that claim ``width × height`` pixels, nothing else."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def corrected_cvat(open_round: Path, tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "cvat"
    assert main(["export", "-w", str(open_round), "--out", str(out), "--format", "cvat"]) == 0
    return open_round, out


def test_a_label_path_that_is_not_a_file_is_named(
    synthetic: SyntheticPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #24: a directory or a link loop where a label file goes is not "no ground truth"."""
    labels = synthetic.root / "labels" / "train"
    first, second = sorted(labels.iterdir())[:2]
    first.unlink()
    first.mkdir()
    second.unlink()
    second.symlink_to(second)  # a link to itself
    assert main(["init", "-w", str(tmp_path / "ws"), "--data", str(synthetic.root)]) == 1
    err = capsys.readouterr().err
    assert f"{first}: the label file is a directory" in err
    assert f"{second}: the label file is a link that leads nowhere (or to itself)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "ws" / DB_NAME).exists()


def test_a_shared_feature_cache_keeps_same_id_images_of_two_datasets_apart(
    tmp_path: Path,
) -> None:
    """Issue #24: the library's FeatureCache with default settings."""
    import torch

    from a2lc.models.config import ModelConfig
    from a2lc.models.training import FeatureCache
    from a2lc.models.zoo import build_model

    rng = np.random.default_rng(0)
    first, second = (rng.integers(0, 255, (32, 48, 3)).astype(np.uint8) for _ in range(2))
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=2, weights="none"))
    one = FeatureCache(tmp_path, model, lambda _: first, device=torch.device("cpu"))
    other = FeatureCache(tmp_path, model, lambda _: second, device=torch.device("cpu"))
    assert one.path("a") != other.path("a")
    features_one = one.get("a", shape=(32, 48))
    features_other = other.get("a", shape=(32, 48))
    assert not all(torch.equal(x, y) for x, y in zip(features_one, features_other, strict=True))
    fresh = FeatureCache(tmp_path, model, lambda _: second, device=torch.device("cpu"))
    for x, y in zip(features_other, fresh.get("a", shape=(32, 48)), strict=True):
        assert torch.equal(x, y)  # the right file is found again
