"""Pictures of one queried segment for the annotator (pure: arrays in, array out).

Shapes: ``image`` ``H×W×3`` uint8, ``mask`` ``H×W`` bool (the segment).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DIM = 0.45
"""Brightness kept outside the segment."""
OUTLINE_COLOR = (255, 214, 0)
OUTLINE_FRACTION = 1 / 250
"""Outline width as a fraction of the image's shorter side (at least one pixel)."""
CONTEXT = 1.0
"""Zoomed view: margin around the segment's box, as a fraction of the box size."""
MIN_CROP = 48
"""Zoomed view: smallest crop side (px), so tiny segments keep some context."""


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)`` (exclusive ends) of the mask's pixels; the whole frame if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0, 0, mask.shape[0], mask.shape[1]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def highlight(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with everything outside ``mask`` dimmed and the mask's boundary outlined."""
    out = image.astype(np.float32)
    out[~mask] *= DIM
    width = max(1, round(min(mask.shape) * OUTLINE_FRACTION))
    inner = ndimage.binary_erosion(mask, iterations=width, border_value=0)
    outline = mask & ~inner
    out[outline] = OUTLINE_COLOR
    return out.astype(np.uint8)


def context_crop(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)``: the segment's box grown by :data:`CONTEXT` and clipped."""
    height, width = mask.shape
    y0, x0, y1, x1 = bounding_box(mask)
    grow_y = max(int((y1 - y0) * CONTEXT / 2), (MIN_CROP - (y1 - y0)) // 2, 0)
    grow_x = max(int((x1 - x0) * CONTEXT / 2), (MIN_CROP - (x1 - x0)) // 2, 0)
    return (
        max(0, y0 - grow_y),
        max(0, x0 - grow_x),
        min(height, y1 + grow_y),
        min(width, x1 + grow_x),
    )


def segment_view(image: np.ndarray, mask: np.ndarray, *, zoom: bool) -> np.ndarray:
    """The highlighted image, whole or cropped to the segment with context."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    view = highlight(image, mask)
    if not zoom:
        return view
    y0, x0, y1, x1 = context_crop(mask)
    return view[y0:y1, x0:x1]
