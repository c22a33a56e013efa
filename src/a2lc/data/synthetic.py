"""A small generated road-scene dataset for the demo and for tests.

It writes the plain folder layout (``images/``, ``labels/``, ``classes.json``)
plus what a user would bring along: ``segments/`` (object-like segments),
``pseudo/`` (noisy initial labels, long-tailed noise: rare classes are
mislabelled more often) and ``probs/`` (probabilities of an imperfect model).
Deterministic under ``seed``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from a2lc._atomic import atomic_write_text
from a2lc.data.maps import write_label_map, write_segment_map

CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("sky", (70, 130, 180)),
    ("building", (70, 70, 70)),
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("tree", (107, 142, 35)),
    ("car", (0, 0, 142)),
    ("pole", (153, 153, 153)),
    ("person", (220, 20, 60)),
)
SKY, BUILDING, ROAD, SIDEWALK, TREE, CAR, POLE, PERSON = range(len(CLASSES))

# Which class a mislabelled segment of each class most likely gets.
_CONFUSION = {
    SKY: BUILDING,
    BUILDING: SKY,
    ROAD: SIDEWALK,
    SIDEWALK: ROAD,
    TREE: BUILDING,
    CAR: ROAD,
    POLE: BUILDING,
    PERSON: SIDEWALK,
}
# Probability that a segment's pseudo-label is wrong: head classes rarely, tail classes often.
_FLIP_RATE = {
    SKY: 0.05,
    BUILDING: 0.1,
    ROAD: 0.05,
    SIDEWALK: 0.3,
    TREE: 0.2,
    CAR: 0.3,
    POLE: 0.6,
    PERSON: 0.6,
}


@dataclass(frozen=True)
class SyntheticPaths:
    root: Path
    split: str
    segments: Path
    pseudo: Path
    probs: Path


def _scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    gt = np.full((height, width), SKY, dtype=np.uint8)
    horizon = int(height * rng.uniform(0.4, 0.55))
    gt[horizon:] = ROAD
    walk = int(height * 0.08)
    gt[horizon : horizon + walk] = SIDEWALK
    x = 0
    while x < width:  # a row of buildings and trees along the horizon
        w = int(rng.integers(width // 8, width // 4))
        top = int(rng.integers(height // 10, horizon - height // 10))
        gt[top:horizon, x : x + w] = BUILDING if rng.random() < 0.7 else TREE
        x += w
    for _ in range(int(rng.integers(1, 4))):
        cx = int(rng.integers(0, width))
        cy = int(rng.integers(horizon - height // 6, horizon))
        r = int(rng.integers(height // 14, height // 8))
        yy, xx = np.ogrid[:height, :width]
        gt[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = TREE
    for _ in range(int(rng.integers(1, 4))):
        w, h = (
            int(rng.integers(width // 8, width // 5)),
            int(rng.integers(height // 10, height // 6)),
        )
        x0 = int(rng.integers(0, width - w))
        y0 = int(rng.integers(horizon + walk, height - h))
        gt[y0 : y0 + h, x0 : x0 + w] = CAR
    for _ in range(int(rng.integers(1, 3))):
        x0 = int(rng.integers(0, width - 3))
        gt[horizon - height // 4 : horizon + walk, x0 : x0 + max(2, width // 60)] = POLE
    for _ in range(int(rng.integers(0, 3))):
        x0 = int(rng.integers(0, width - width // 30 - 1))
        h = height // 6
        gt[horizon + walk - h : horizon + walk, x0 : x0 + max(3, width // 30)] = PERSON
    return gt


def _segments(gt: np.ndarray, cell: int) -> np.ndarray:
    """Object-like segments: connected regions of one class, split on a grid of ``cell`` px."""
    height, width = gt.shape
    cells = (np.arange(height)[:, None] // cell) * (width // cell + 1) + np.arange(width)[
        None, :
    ] // cell
    segments = np.zeros(gt.shape, dtype=np.int64)
    offset = 0
    for c in np.unique(gt):
        components, n = ndimage.label(gt == c)
        mask = components > 0
        segments[mask] = offset + components[mask] * cells.size + cells[mask]
        offset += (n + 1) * cells.size
    _, inverse = np.unique(segments, return_inverse=True)
    return inverse.reshape(gt.shape).astype(np.int32) + 1


def make_synthetic_dataset(
    root: Path | str,
    *,
    num_images: int = 12,
    height: int = 96,
    width: int = 128,
    seed: int = 0,
    split: str = "train",
    cell: int = 24,
) -> SyntheticPaths:
    """Write a synthetic dataset under ``root`` and return where each part is."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    palette = [color for _, color in CLASSES]
    classes = [{"id": i, "name": n, "color": list(c)} for i, (n, c) in enumerate(CLASSES)]
    atomic_write_text(root / "classes.json", json.dumps(classes, indent=1))
    paths = SyntheticPaths(root, split, root / "segments", root / "pseudo", root / "probs")
    for folder in (
        root / "images" / split,
        root / "labels" / split,
        paths.segments,
        paths.pseudo,
        paths.probs,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    num_classes = len(CLASSES)
    for index in range(num_images):
        name = f"{split}_{index:03d}"
        gt = _scene(rng, height, width)
        image = np.asarray(palette, dtype=np.float32)[gt] + rng.normal(0, 12, (height, width, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            root / "images" / split / f"{name}.png"
        )
        write_label_map(root / "labels" / split / f"{name}.png", gt, palette=palette)
        segments = _segments(gt, cell)
        write_segment_map(paths.segments / f"{name}.png", segments)
        # Pseudo-labels: each segment gets its true class, or a confusable one.
        seg_class = np.zeros(segments.max() + 1, dtype=np.uint8)
        seg_class[segments.ravel()] = gt.ravel()
        flips = rng.random(seg_class.size) < np.array([_FLIP_RATE[int(c)] for c in seg_class])
        noisy_class = np.where(flips, [_CONFUSION[int(c)] for c in seg_class], seg_class).astype(
            np.uint8
        )
        write_label_map(paths.pseudo / f"{name}.png", noisy_class[segments], palette=palette)
        # An imperfect model: right most of the time, with smooth spatial noise.
        noise = ndimage.gaussian_filter(
            rng.normal(0, 2.5, (num_classes, height, width)), sigma=(0, 4, 4)
        )
        logits = 4.0 * noise
        logits[gt, np.arange(height)[:, None], np.arange(width)[None, :]] += 2.0
        probs = np.exp(logits - logits.max(axis=0, keepdims=True))
        probs /= probs.sum(axis=0, keepdims=True)
        np.save(paths.probs / f"{name}.npy", probs.astype(np.float32))
    return paths
