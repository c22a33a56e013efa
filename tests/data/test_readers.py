from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from a2lc.data import FORMATS, load_dataset, read_ground_truth, validate_dataset
from a2lc.data.readers import cityscapes_lut
from a2lc.errors import DataError, UnknownNameError
from tests.fakes import make_cityscapes_tree, make_folder_tree, make_voc_tree, write_gray


def test_folder_layout_reads_samples_of_different_sizes(tmp_path: Path) -> None:
    root = make_folder_tree(tmp_path / "ds", sizes=((12, 16), (10, 14)))
    dataset = load_dataset(root, split="train")
    assert dataset.format == "folder"
    assert dataset.num_classes == 3
    assert [s.id for s in dataset.samples] == ["img0", "img1"]
    assert [s.shape for s in dataset.samples] == [(12, 16), (10, 14)]
    assert dataset.samples[1].gt_path == root.resolve() / "labels/train/img1.png"
    validate_dataset(dataset, show_progress=False)
    gt = read_ground_truth(dataset, dataset.samples[0])
    assert gt.dtype == np.uint8
    assert gt.shape == (12, 16)
    assert gt[0, 0] == 255


def test_folder_layout_without_labels_has_no_ground_truth(tmp_path: Path) -> None:
    dataset = load_dataset(make_folder_tree(tmp_path / "ds", with_labels=False), split="train")
    assert not dataset.has_ground_truth
    assert all(s.gt_path is None for s in dataset.samples)


def test_camvid_copy(camvid: Path) -> None:
    dataset = load_dataset(camvid, split="val")
    assert dataset.format == "folder"
    assert len(dataset.samples) == 101
    assert [c.name for c in dataset.classes][:3] == ["Sky", "Building", "Pole"]
    assert dataset.samples[0].shape == (360, 480)
    gt = read_ground_truth(dataset, dataset.samples[0])
    assert set(np.unique(gt)) <= {*range(11), 255}


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path: Path) -> None:
    raw = make_cityscapes_tree(tmp_path / "cs")
    dataset = load_dataset(tmp_path / "cs", split="train")
    assert dataset.format == "cityscapes"
    assert dataset.num_classes == 19
    assert dataset.classes[13].name == "car"
    assert [s.id for s in dataset.samples] == sorted(raw)
    sample = dataset.samples[0]
    gt = read_ground_truth(dataset, sample)
    ids = raw[sample.id]
    assert (gt[ids == 7] == 0).all()  # road
    assert (gt[ids == 26] == 13).all()  # car
    assert (gt[ids == 33] == 18).all()  # bicycle
    assert (gt[ids == 0] == 255).all()
    assert (gt[ids == 9] == 255).all()
    lut = cityscapes_lut()
    assert sorted(set(lut[lut >= 0]) - {255}) == list(range(19))


def test_cityscapes_rejects_label_ids_above_33(tmp_path: Path) -> None:
    make_cityscapes_tree(tmp_path / "cs")
    bad = next((tmp_path / "cs/gtFine/train/bonn").glob("*.png"))
    write_gray(bad, np.full((8, 16), 40))
    with pytest.raises(
        DataError, match=r"bonn_000000_000019_gtFine_labelIds.png.*invalid class ids \(40\)"
    ):
        validate_dataset(load_dataset(tmp_path / "cs", split="train"), show_progress=False)


def test_voc_layout_with_palette_ground_truth(tmp_path: Path) -> None:
    ids = make_voc_tree(tmp_path / "voc")
    dataset = load_dataset(tmp_path / "voc", split="train")
    assert dataset.format == "voc"
    assert dataset.num_classes == 21
    assert dataset.classes[15].name == "person"
    assert [s.id for s in dataset.samples] == ids
    assert dataset.samples[1].shape == (11, 12)
    gt = read_ground_truth(dataset, dataset.samples[1])
    assert set(np.unique(gt)) == {0, 15, 255}


def test_unknown_format_lists_valid_ones(tmp_path: Path) -> None:
    root = make_folder_tree(tmp_path / "ds")
    with pytest.raises(UnknownNameError, match="valid names: cityscapes, folder, voc"):
        load_dataset(root, split="train", format="coco")
    assert FORMATS.names() == ["cityscapes", "folder", "voc"]


def test_unrecognised_layout(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="not a known dataset layout"):
        load_dataset(tmp_path / "nothing", split="train")


# ---------------------------------------------------------------- bad input


def test_empty_split(tmp_path: Path) -> None:
    root = make_folder_tree(tmp_path / "ds")
    (root / "images" / "val").mkdir()
    with pytest.raises(DataError, match=r"images/val: split 'val' has no images"):
        load_dataset(root, split="val")


def test_missing_split(tmp_path: Path) -> None:
    root = make_folder_tree(tmp_path / "ds")
    with pytest.raises(DataError, match=r"split 'test' not found"):
        load_dataset(root, split="test")


def test_ground_truth_for_a_subset_of_the_pool(tmp_path: Path) -> None:
    root = make_folder_tree(tmp_path / "ds")
    (root / "labels/train/img1.png").unlink()
    dataset = load_dataset(root, split="train")
    assert [s.id for s in dataset.samples if s.gt_path is None] == ["img1"]
    assert dataset.ground_truth_count == len(dataset.samples) - 1
    assert not dataset.has_ground_truth
    validate_dataset(dataset, show_progress=False)  # the images that have it are fine


def test_non_strict_load_returns_the_problems(tmp_path: Path) -> None:
    root = make_folder_tree(tmp_path / "ds")
    (root / "images/train/img2.jpg").write_bytes(b"not an image")
    dataset = load_dataset(root, split="train", strict=False)
    assert "img2" not in [s.id for s in dataset.samples]
    assert [Path(p.path).name for p in dataset.problems] == ["img2.jpg"]


def test_every_bad_label_is_reported_once(tmp_path: Path) -> None:
    root = make_folder_tree(tmp_path / "ds", sizes=((12, 16),) * 4)
    labels = root / "labels" / "train"
    write_gray(labels / "img0.png", np.zeros((11, 16)))  # wrong size
    write_gray(labels / "img1.png", np.full((12, 16), 7))  # class out of range
    (labels / "img2.png").write_bytes((labels / "img3.png").read_bytes()[:60])  # truncated
    dataset = load_dataset(root, split="train")
    with pytest.raises(DataError) as info:
        validate_dataset(dataset, show_progress=False)
    problems = {Path(p.path).name: p.reason for p in info.value.problems}
    assert set(problems) == {"img0.png", "img1.png", "img2.png"}
    assert "size 16×11 does not match its image (16×12" in problems["img0.png"]
    assert "invalid class ids (7)" in problems["img1.png"]
    assert "0..2 and 255" in problems["img1.png"]
    assert "unreadable or truncated" in problems["img2.png"]
    assert str(info.value).startswith("3 problem(s) in")


def test_corrupt_image_is_reported(tmp_path: Path) -> None:
    root = make_folder_tree(tmp_path / "ds")
    (root / "images/train/img2.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"img2.jpg: unreadable image"):
        load_dataset(root, split="train")


def test_rgb_label_is_rejected(tmp_path: Path) -> None:
    root = make_folder_tree(tmp_path / "ds")
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / "labels/train/img0.png")
    with pytest.raises(DataError, match="single-channel"):
        validate_dataset(load_dataset(root, split="train"), show_progress=False)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "non-empty list"),
        ('[{"id": 0, "name": "a"}, {"id": 2, "name": "b"}]', "without gaps"),
        ('[{"name": "a"}]', "needs an integer 'id'"),
        ('[{"id": 0, "name": "a", "color": [0, 300, 0]}]', "color values must be 0..255"),
    ],
)
def test_bad_classes_json(tmp_path: Path, content: str, message: str) -> None:
    root = make_folder_tree(tmp_path / "ds")
    (root / "classes.json").write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(root, split="train")
