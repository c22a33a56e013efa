"""Hostile inputs from the adversarial pass (issue 12): each one gets one clear error, exit
code 1, and nothing is written. Atomic imports, the web app and the feature cache have
their own modules (tests/workspace/test_initial_import.py, tests/web/test_security.py,
tests/models/test_models.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.data import load_dataset
from a2lc.data.probs import load_probabilities
from a2lc.data.synthetic import SyntheticPaths
from a2lc.errors import DataError, WorkspaceError
from a2lc.workspace import Workspace
from a2lc.workspace.workspace import DB_NAME
from tests.fakes import make_voc_tree
from tests.web.test_app import snapshot


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


def test_coco_panoptic_file_names_stay_in_their_folder(
    synthetic: SyntheticPaths, tmp_path: Path
) -> None:
    from a2lc.interop.coco_panoptic import export_panoptic, read_panoptic

    ws_path = tmp_path / "ws"
    assert (
        main(
            [
                "init",
                "-w",
                str(ws_path),
                "--data",
                str(synthetic.root),
                "--segments",
                str(synthetic.segments),
                "--labels",
                str(synthetic.pseudo),
            ]
        )
        == 0
    )
    with Workspace.open(ws_path) as ws:
        export_panoptic(ws, tmp_path / "pan")
        document = tmp_path / "pan" / "panoptic.json"
        data = json.loads(document.read_text())
        data["annotations"][0]["file_name"] = "../../escape.png"
        document.write_text(json.dumps(data))
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
    ws_path = tmp_path / "ws"
    assert (
        main(
            [
                "init",
                "-w",
                str(ws_path),
                "--data",
                str(synthetic.root),
                "--segments",
                str(synthetic.segments),
                "--labels",
                str(synthetic.pseudo),
            ]
        )
        == 0
    )
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

    ws_path = tmp_path / "ws"
    assert (
        main(
            [
                "init",
                "-w",
                str(ws_path),
                "--data",
                str(synthetic.root),
                "--segments",
                str(synthetic.segments),
                "--labels",
                str(synthetic.pseudo),
            ]
        )
        == 0
    )
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
    from a2lc.loop import answer_with_oracle

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
