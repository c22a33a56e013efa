"""FiftyOne's ``ImageSegmentationDirectory`` layout: what its importer reads as is.

::

    data/<image id>.<ext>      # the images (hard links; copies across devices)
    labels/<image id>.png      # 8-bit grayscale class ids, 255 = void (no palette)
    mask_targets.json          # {"0": "sky", ...}: set it as the dataset's mask targets
    scores/<image id>.png      # with scores: each segment's P(label wrong) × 255
    scores.json                # with scores: {image id: {segment id: P(label wrong)}}

FiftyOne pairs images and masks by file stem and lists every file under
``labels/``, so nothing else is written there; class ids are plain pixel values
(a palette PNG would be read as RGB colours).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from a2lc._atomic import atomic_write_text
from a2lc.data.maps import write_png_image
from a2lc.interop.coco_panoptic import link_image
from a2lc.workspace import Workspace

MASK_TARGETS = "mask_targets.json"


SCORES = "scores"
"""``scores/<image id>.png``: each segment's P(label wrong) × 255 (8-bit, 0 outside
segments), for ``fo.Heatmap(map_path=..., range=[0, 255])``; ``scores.json`` the values."""


def segment_wrong_probability(
    probs: np.ndarray, labels: np.ndarray, segments: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each segment's probability that its label is wrong, as the model sees it.

    ``probs``: ``C×H×W``; ``labels``, ``segments``: ``H×W``. Returns ``(ids (N,),
    1 − P̄[label] (N,))`` over the segments' labelled pixels (1.0 for a segment with
    none: nothing says its label is right).
    """
    num_classes = probs.shape[0]
    seg = np.asarray(segments, dtype=np.int64).ravel()
    lab = np.asarray(labels, dtype=np.int64).ravel()
    ids = np.unique(seg[seg > 0])
    known = (lab < num_classes) & (seg > 0)
    flat = probs.reshape(num_classes, -1)
    own = flat[lab[known], np.flatnonzero(known)]
    top = int(seg.max(initial=0)) + 1
    total = np.bincount(seg[known], weights=own, minlength=top)
    count = np.bincount(seg[known], minlength=top)
    mean = np.divide(total, count, out=np.zeros(top), where=count > 0)
    wrong = np.where(count[ids] > 0, 1.0 - mean[ids], 1.0)
    return ids, np.clip(wrong, 0.0, 1.0)


def export_fiftyone(
    ws: Workspace, out: Path, *, probabilities: Callable[[str], np.ndarray] | None = None
) -> int:
    """Write the current labels of every image in FiftyOne's layout; returns the image count.

    ``probabilities``: an image id's ``C×H×W`` model probabilities; with it each
    segment's P(label wrong) is written too (:data:`SCORES`).
    """
    ws.require_segments()
    out = Path(out)
    scores: dict[str, dict[str, float]] = {}
    for sample in ws.samples:
        segments = ws.read_segments(sample.id)
        labels = ws.read_labels(sample.id, segments=segments)
        write_png_image(out / "labels" / f"{sample.id}.png", Image.fromarray(labels, mode="L"))
        suffix = Path(sample.image_path).suffix
        link_image(Path(sample.image_path), out / "data" / f"{sample.id}{suffix}")
        if probabilities is not None:
            ids, wrong = segment_wrong_probability(probabilities(sample.id), labels, segments)
            lookup = np.zeros(int(segments.max(initial=0)) + 1)
            lookup[ids] = wrong
            heat = np.round(255 * lookup[segments]).astype(np.uint8)
            write_png_image(out / SCORES / f"{sample.id}.png", Image.fromarray(heat, mode="L"))
            scores[sample.id] = {
                str(i): round(float(w), 6) for i, w in zip(ids, wrong, strict=True)
            }
    targets = {str(c.id): c.name for c in ws.dataset.classes}
    atomic_write_text(out / MASK_TARGETS, json.dumps(targets, indent=1))
    if probabilities is not None:
        atomic_write_text(out / f"{SCORES}.json", json.dumps(scores))
    return len(ws.samples)
