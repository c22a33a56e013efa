"""Offline segment generators: pure functions from an image or ground truth to a segment map.

* :func:`superpixel_segments`: an over-segmentation of the image (SLIC), for
  users without a foundation model.
* :func:`gt_proxy_segments`: object-aligned segments like SAM's, derived from
  ground-truth connected components (benchmarks only): tiny components are
  dropped (left uncovered), large regions are split into pieces, and boundaries
  are jittered by a few pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import MissingDependencyError


@dataclass(frozen=True)
class GtProxyConfig:
    """Shape of the gt-proxy segments, in pixels at label resolution."""

    min_area: int = 64
    """Components smaller than this are dropped (uncovered), as a detector misses them."""
    max_side: int = 120
    """Regions are cut on a grid of this many pixels, so large stuff becomes several segments."""
    jitter: float = 3.0
    """RMS displacement (px) of the smooth random field that moves boundaries."""
    jitter_smoothness: float = 8.0
    """Spatial scale (px) of that displacement."""


def relabel_consecutive(segments: np.ndarray) -> np.ndarray:
    """Renumber segment ids to 1..M in order of first appearance by id (0 stays 0)."""
    ids, inverse = np.unique(segments, return_inverse=True)
    out = inverse.reshape(segments.shape).astype(np.int32)
    return out if ids[0] == 0 else out + 1


def gt_proxy_segments(
    ground_truth: np.ndarray, *, rng: np.random.Generator, config: GtProxyConfig = GtProxyConfig()
) -> np.ndarray:
    """``H×W`` int32 segment map (0 = uncovered) from ``H×W`` uint8 ground truth (255 = void)."""
    height, width = ground_truth.shape
    cells_x = -(-width // config.max_side)
    cell = (np.arange(height)[:, None] // config.max_side) * cells_x + np.arange(width)[
        None, :
    ] // config.max_side
    key = np.zeros(ground_truth.shape, dtype=np.int64)
    offset = 0
    structure = np.ones((3, 3), dtype=bool)
    for class_id in np.unique(ground_truth):
        if class_id == IGNORE_INDEX:
            continue
        components, count = ndimage.label(ground_truth == class_id, structure=structure)
        mask = components > 0
        key[mask] = offset + components[mask].astype(np.int64) * (cell.max() + 1) + cell[mask] + 1
        offset += (count + 1) * (int(cell.max()) + 1) + 1
    segments = relabel_consecutive(key)
    segments = _jitter(
        segments, rng=rng, amplitude=config.jitter, smoothness=config.jitter_smoothness
    )
    sizes = np.bincount(segments.ravel())
    small = sizes < config.min_area
    small[0] = False
    segments[small[segments]] = 0
    return relabel_consecutive(segments)


def _jitter(
    segments: np.ndarray, *, rng: np.random.Generator, amplitude: float, smoothness: float
) -> np.ndarray:
    """Resample the map through a smooth random displacement field (nearest neighbour)."""
    if amplitude <= 0:
        return segments
    height, width = segments.shape
    field = []
    for _ in range(2):
        noise = ndimage.gaussian_filter(rng.normal(size=(height, width)), sigma=smoothness)
        noise /= max(float(noise.std()), 1e-12)  # amplitude = RMS displacement
        field.append(noise * amplitude)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    coords = np.stack([np.clip(yy + field[0], 0, height - 1), np.clip(xx + field[1], 0, width - 1)])
    return np.asarray(
        ndimage.map_coordinates(segments, coords, order=0, mode="nearest"), dtype=np.int32
    )


def superpixel_segments(
    image: np.ndarray, *, num_segments: int = 150, compactness: float = 10.0
) -> np.ndarray:
    """SLIC superpixels of an ``H×W×3`` uint8 image: ``H×W`` int32 ids 1..M."""
    try:
        from skimage.segmentation import slic
    except ImportError:
        raise MissingDependencyError(
            'superpixel pseudo-labels need scikit-image: pip install "a2lc[train]"'
        ) from None
    labels = slic(image, n_segments=num_segments, compactness=compactness, start_label=1)
    return relabel_consecutive(np.asarray(labels, dtype=np.int64))


def split_by_prediction(
    segments: np.ndarray, prediction: np.ndarray, *, min_area: int = 64
) -> np.ndarray:
    """Cut each segment where the predicted class changes (adaptive superpixels).

    ``segments``: ``H×W`` ids (0 = none); ``prediction``: ``H×W`` class ids. Each
    segment becomes its parts of one predicted class; a part smaller than
    ``min_area`` pixels stays with the segment's largest part, so edges too small to
    trust do not multiply the segments. Returns ``H×W`` int32 ids 1..M (0 kept).
    """
    segments = np.asarray(segments, dtype=np.int64)
    prediction = np.asarray(prediction, dtype=np.int64)
    if segments.shape != prediction.shape or segments.ndim != 2:
        raise ValueError(
            f"segments {segments.shape} and prediction {prediction.shape} must be the same H×W"
        )
    classes = int(prediction.max(initial=0)) + 1
    key = segments * classes + prediction
    keys, inverse, counts = np.unique(key.ravel(), return_inverse=True, return_counts=True)
    owner = keys // classes
    # Each segment's largest part absorbs its parts below min_area.
    order = np.lexsort((-counts, owner))
    largest = np.empty(int(owner.max(initial=0)) + 1, dtype=np.int64)
    largest[owner[order][::-1]] = order[::-1]
    target = np.where(counts >= min_area, np.arange(keys.size), largest[owner])
    merged = target[inverse].reshape(segments.shape)
    merged = np.where(segments > 0, merged + 1, 0)
    return relabel_consecutive(merged)


def refine_uncertain(
    segments: np.ndarray,
    image: np.ndarray,
    confidence: np.ndarray,
    *,
    below: float,
    pixels_per_part: int,
    compactness: float = 10.0,
) -> np.ndarray:
    """Split again, finer, the segments where the seed model is unsure.

    ``segments``: ``H×W`` ids (0 = none); ``image``: ``H×W×3`` uint8;
    ``confidence``: ``H×W`` the seed model's top probability. A segment whose mean
    confidence is below ``below`` (the model cannot tell its classes apart, so its
    cut may miss a boundary) is cut by SLIC, inside its own pixels, into parts of
    about ``pixels_per_part`` pixels. Returns ``H×W`` int32 ids 1..M (0 kept).
    """
    from skimage.segmentation import slic

    segments = np.asarray(segments, dtype=np.int64)
    if segments.shape != confidence.shape or image.shape[:2] != segments.shape:
        raise ValueError(
            f"segments {segments.shape}, image {image.shape} and confidence {confidence.shape} "
            "must be the same H×W"
        )
    flat = segments.ravel()
    size = np.bincount(flat)
    mean = np.bincount(flat, weights=confidence.ravel(), minlength=size.size) / np.maximum(size, 1)
    unsure = np.flatnonzero((mean < below) & (size >= 2 * pixels_per_part))
    unsure = unsure[unsure > 0]
    out = segments.copy()
    next_id = int(segments.max(initial=0)) + 1
    boxes = ndimage.find_objects(segments)
    for seg_id in unsure.tolist():
        rows, cols = boxes[seg_id - 1]
        mask = segments[rows, cols] == seg_id
        parts = slic(
            image[rows, cols],
            n_segments=max(2, round(int(size[seg_id]) / pixels_per_part)),
            compactness=compactness,
            mask=mask,
            start_label=1,
        )
        crop = out[rows, cols]
        inside = mask & (parts > 0)
        crop[inside] = parts[inside] + next_id - 1
        next_id += int(parts.max(initial=0))
    return relabel_consecutive(out)


def label_segments_by_prediction(
    probs: np.ndarray, segments: np.ndarray, *, min_confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Give each segment its majority predicted class; drop low-confidence segments.

    ``probs``: ``C×H×W`` seed-model probabilities; ``segments``: ``H×W``.
    A segment whose mean max-probability is below ``min_confidence`` is left
    uncovered (segment 0, label 255), as a detector's misses are. Returns the
    new ``(segments, labels)``.
    """
    num_classes = probs.shape[0]
    seg = segments.ravel().astype(np.int64)
    prediction = probs.reshape(num_classes, -1).argmax(axis=0)
    confidence = probs.reshape(num_classes, -1).max(axis=0)
    size = np.bincount(seg)
    hist = np.bincount(seg * num_classes + prediction, minlength=size.size * num_classes).reshape(
        -1, num_classes
    )
    majority = hist.argmax(axis=1)
    mean_conf = np.bincount(seg, weights=confidence, minlength=size.size) / np.maximum(size, 1)
    keep = mean_conf >= min_confidence
    keep[0] = False
    kept_segments = np.where(keep[segments], segments, 0)
    out_segments = relabel_consecutive(kept_segments)
    labels = np.where(keep[segments], majority[segments], IGNORE_INDEX).astype(np.uint8)
    return out_segments, labels
