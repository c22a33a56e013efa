"""Pictures of one queried segment for the annotator (pure: arrays in, array out).

Shapes: ``image`` ``H×W×3`` uint8, ``mask`` ``H×W`` bool (the segment).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DIM = 0.45
"""Brightness kept outside the segment (dark road scenes stay readable)."""
DESATURATE = 0.6
"""Outside the segment, colours move this far toward grey, so the segment stands out on
bright images too (a white wall outside stays visibly duller than one inside)."""
EXPOSURE_PERCENTILES = (0.5, 99.5)
"""Auto exposure: these luminance percentiles are stretched to black and white."""
MIN_EXPOSURE_RANGE = 8.0
"""Auto exposure leaves an image alone whose stretched range would be narrower (flat)."""
TARGET_MEDIAN = 0.42
"""Auto exposure: a dark image's median luminance is lifted to this (0..1) by a gamma."""
MIN_GAMMA = 0.5
"""Auto exposure never brightens mid-tones more than this gamma does."""
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


def auto_exposure(image: np.ndarray) -> np.ndarray:
    """``H×W×3`` uint8 with its luminance range stretched and dark mid-tones lifted.

    One linear stretch for all channels (colours keep their hue), then a gamma that
    brings the median up to :data:`TARGET_MEDIAN` (only ever brightening, at most
    :data:`MIN_GAMMA`). A flat image comes back unchanged.
    """
    pixels = image.astype(np.float32)
    luminance = pixels @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    low, high = np.percentile(luminance, EXPOSURE_PERCENTILES)
    if high - low < MIN_EXPOSURE_RANGE:
        return image
    stretched: np.ndarray = np.clip((pixels - low) / (high - low), 0.0, 1.0)
    median = float(np.median(np.clip((luminance - low) / (high - low), 0.0, 1.0)))
    if 0.0 < median < TARGET_MEDIAN:
        gamma = max(MIN_GAMMA, float(np.log(TARGET_MEDIAN) / np.log(median)))
        stretched = np.power(stretched, gamma)
    return np.round(stretched * 255.0).astype(np.uint8)


def highlight(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with everything outside ``mask`` dimmed and the mask's boundary outlined."""
    out = image.astype(np.float32)
    outside = out[~mask]
    grey = outside @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    outside += DESATURATE * (grey[:, None] - outside)
    out[~mask] = outside * DIM
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


def segment_view(
    image: np.ndarray, mask: np.ndarray, *, zoom: bool, exposure: bool = True
) -> np.ndarray:
    """The highlighted image, whole or cropped to the segment with context.

    ``exposure``: apply :func:`auto_exposure` first (measured on the whole image, so
    the zoomed and the whole view match).
    """
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    view = highlight(auto_exposure(image) if exposure else image, mask)
    if not zoom:
        return view
    y0, x0, y1, x1 = context_crop(mask)
    return view[y0:y1, x0:x1]
