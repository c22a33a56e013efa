"""FiftyOne's ``ImageSegmentationDirectory`` layout: what its importer reads as is.

::

    data/<image id>.<ext>      # the images (hard links; copies across devices)
    labels/<image id>.png      # 8-bit grayscale class ids, 255 = void (no palette)
    mask_targets.json          # {"0": "sky", ...}: set it as the dataset's mask targets

FiftyOne pairs images and masks by file stem and lists every file under
``labels/``, so nothing else is written there; class ids are plain pixel values
(a palette PNG would be read as RGB colours).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from a2lc._atomic import atomic_write_text
from a2lc.data.maps import write_png_image
from a2lc.interop.coco_panoptic import link_image
from a2lc.workspace import Workspace

MASK_TARGETS = "mask_targets.json"


def export_fiftyone(ws: Workspace, out: Path) -> int:
    """Write the current labels of every image in FiftyOne's layout; returns the image count."""
    ws.require_segments()
    out = Path(out)
    for sample in ws.samples:
        labels = ws.read_labels(sample.id)
        write_png_image(out / "labels" / f"{sample.id}.png", Image.fromarray(labels, mode="L"))
        suffix = Path(sample.image_path).suffix
        link_image(Path(sample.image_path), out / "data" / f"{sample.id}{suffix}")
    targets = {str(c.id): c.name for c in ws.dataset.classes}
    atomic_write_text(out / MASK_TARGETS, json.dumps(targets, indent=1))
    return len(ws.samples)
