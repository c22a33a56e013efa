"""Builders of tiny fake dataset trees (folder, Cityscapes, VOC) for tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from a2lc.data.readers import voc_palette


def write_image(
    path: Path, height: int, width: int, *, seed: int = 0, suffix: str = ".png"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_gray(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def write_classes(root: Path, names: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    classes = [
        {"id": i, "name": n, "color": [(i * 20) % 256, 255 - (i * 20) % 256, 7 * i % 256]}
        for i, n in enumerate(names)
    ]
    (root / "classes.json").write_text(json.dumps(classes))


def make_folder_tree(
    root: Path,
    *,
    sizes: tuple[tuple[int, int], ...] = ((12, 16), (10, 14), (12, 16)),
    num_classes: int = 3,
    split: str = "train",
    with_labels: bool = True,
) -> Path:
    """``images/<split>/img{i}.jpg`` (sizes H×W may differ), ``labels/``, ``classes.json``."""
    write_classes(root, [f"class{i}" for i in range(num_classes)])
    for i, (h, w) in enumerate(sizes):
        write_image(root / "images" / split / f"img{i}.jpg", h, w, seed=i)
        if with_labels:
            labels = (np.arange(h * w).reshape(h, w) + i) % num_classes
            labels[0, 0] = 255
            write_gray(root / "labels" / split / f"img{i}.png", labels)
    return root


def make_cityscapes_tree(root: Path, *, split: str = "train") -> dict[str, np.ndarray]:
    """Two cities, three images, label ids 0..33; returns raw label ids per image id."""
    raw: dict[str, np.ndarray] = {}
    for i, (city, stem) in enumerate(
        [
            ("aachen", "aachen_000000_000019"),
            ("aachen", "aachen_000001_000019"),
            ("bonn", "bonn_000000_000019"),
        ]
    ):
        write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", 8, 16, seed=i)
        ids = (np.arange(8 * 16).reshape(8, 16) + i) % 34
        write_gray(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
        raw[stem] = ids
    return raw


def make_voc_tree(root: Path, *, split: str = "train") -> list[str]:
    """``VOCdevkit/VOC2012`` with palette PNG ground truth and a 255 border."""
    base = root / "VOCdevkit" / "VOC2012"
    ids = ["2007_000032", "2007_000039"]
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    palette = voc_palette()
    for i, image_id in enumerate(ids):
        write_image(base / "JPEGImages" / f"{image_id}.jpg", 10 + i, 12, seed=i, suffix=".jpg")
        labels = np.full((10 + i, 12), 15 if i else 1, dtype=np.uint8)
        labels[:, :3] = 0
        labels[:, 3] = 255
        image = Image.frombytes("P", (12, 10 + i), labels.tobytes())
        image.putpalette(palette.ravel().tolist())
        (base / "SegmentationClass").mkdir(exist_ok=True)
        image.save(base / "SegmentationClass" / f"{image_id}.png")
    return ids
