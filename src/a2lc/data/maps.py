"""Reading, writing and validating label maps and segment maps as PNG files.

* Label map: ``H×W`` uint8, class id per pixel, 255 = ignore. Written as a
  palette PNG when a palette is given (viewers show colours, readers get ids).
* Segment map: ``H×W`` int32, segment id per pixel, 0 = covered by no segment.
  Written as 8-bit PNG when every id fits, else 16-bit PNG (ids up to 65535).

Every reader raises :class:`~a2lc.errors.DataError` naming the file and what is
wrong with it: missing, unreadable or truncated, wrong size, wrong values.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from a2lc._atomic import atomic_write, atomic_write_bytes
from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import DataError, Problem

MAX_SEGMENT_ID = 65535
"""Largest segment id a 16-bit PNG can hold."""


def read_png_array(path: Path) -> np.ndarray:
    """Decode an image file fully (so truncation is detected) into an array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(Problem(path, "file is missing"))
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(image, dtype=np.uint16)
            return np.asarray(image)
    except Image.DecompressionBombError as exc:
        raise DataError(Problem(path, f"image too large to decode safely ({exc})")) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(Problem(path, f"unreadable or truncated image ({exc})")) from None


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image, reading only its header."""
    path = Path(path)
    if not path.is_file():
        raise DataError(Problem(path, "file is missing"))
    try:
        with Image.open(path) as image:
            size = image.size
            kind = image.format
    except Image.DecompressionBombError as exc:
        raise DataError(Problem(path, f"image too large to decode safely ({exc})")) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(Problem(path, f"unreadable image ({exc})")) from None
    ending = _END_MARKERS.get(kind or "")
    if ending is not None:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 64))
            tail = handle.read()
        if ending not in tail:  # rare for a complete file: decode it to be sure
            read_png_array(path)
    return size


_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
"""Bytes near the end of a complete file: a cheap truncation check without decoding."""


def _check_single_channel(path: Path, array: np.ndarray, what: str) -> None:
    if array.ndim != 2:
        raise DataError(
            Problem(path, f"{what} must be a single-channel image, got shape {array.shape}")
        )


def _check_shape(path: Path, array: np.ndarray, shape: tuple[int, int] | None) -> None:
    if shape is not None and array.shape != tuple(shape):
        raise DataError(
            Problem(
                path,
                f"size {array.shape[1]}×{array.shape[0]} does not match its image "
                f"({shape[1]}×{shape[0]}, width×height)",
            )
        )


def decode_labels(raw: np.ndarray, *, lut: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    """Map raw label values through ``lut`` (256 entries, -1 = invalid) to class ids."""
    values = np.asarray(raw)
    if values.dtype != np.uint8:
        if values.size and (values.min() < 0 or values.max() > 255):
            raise DataError(Problem(path, f"label values must be 0..255, got {values.max()}"))
        values = values.astype(np.uint8)
    mapped = lut[values]
    bad = mapped < 0
    if bad.any():
        invalid = np.unique(values[bad])
        shown = ", ".join(str(v) for v in invalid[:10])
        raise DataError(
            Problem(
                path,
                f"{int(bad.sum())} pixels have invalid class ids ({shown}); valid ids are "
                f"{_describe_valid(lut)}",
            )
        )
    return np.asarray(mapped, dtype=np.uint8)


def _describe_valid(lut: np.ndarray) -> str:
    valid = np.flatnonzero(lut >= 0)
    identity = np.array_equal(lut[valid], valid)
    if identity and valid.size > 1 and valid[-1] == IGNORE_INDEX:
        return f"0..{valid[-2]} and {IGNORE_INDEX} (ignore)"
    return ", ".join(str(v) for v in valid)


def read_label_map(
    path: Path,
    *,
    lut: np.ndarray,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read a label map PNG as ``H×W`` uint8 class ids (255 = ignore).

    ``lut`` maps raw values to class ids (see :func:`a2lc.data.sample.identity_lut`);
    ``shape`` is the expected ``(H, W)``, checked when given.
    """
    path = Path(path)
    raw = read_png_array(path)
    _check_single_channel(path, raw, "a label map")
    _check_shape(path, raw, shape)
    return decode_labels(raw, lut=lut, path=path)


def read_segment_map(path: Path, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a segment map PNG (8- or 16-bit) as ``H×W`` int32 (0 = no segment)."""
    path = Path(path)
    raw = read_png_array(path)
    _check_single_channel(path, raw, "a segment map")
    _check_shape(path, raw, shape)
    if raw.dtype.kind not in "iu":
        raise DataError(Problem(path, f"segment ids must be integers, got {raw.dtype}"))
    if raw.size and raw.min() < 0:
        raise DataError(Problem(path, "segment ids must be >= 0"))
    return raw.astype(np.int32)


def encode_png(
    array: np.ndarray, *, palette: Sequence[tuple[int, int, int]] | None = None
) -> bytes:
    """Encode a 2-D uint8/uint16 array as PNG bytes (palette PNG for uint8 + palette)."""
    if array.dtype == np.uint8:
        image = Image.fromarray(array) if palette is None else _palette_image(array, palette)
    elif array.dtype == np.uint16:
        image = Image.fromarray(array)
    else:
        raise TypeError(f"PNG maps must be uint8 or uint16, got {array.dtype}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def write_png_image(path: Path, image: Image.Image) -> None:
    """Atomically write a PIL image (any mode PNG takes) as PNG."""
    atomic_write(Path(path), lambda handle: image.save(handle, format="PNG"))


def _palette_image(array: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> Image.Image:
    height, width = array.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(array).tobytes())
    flat = np.zeros((256, 3), dtype=np.uint8)
    for index, color in enumerate(palette[:IGNORE_INDEX]):
        flat[index] = color
    flat[IGNORE_INDEX] = (255, 255, 255)
    image.putpalette(flat.ravel().tolist())
    return image


def write_label_map(
    path: Path,
    labels: np.ndarray,
    *,
    palette: Sequence[tuple[int, int, int]] | None = None,
) -> None:
    """Atomically write an ``H×W`` uint8 label map as PNG (palette PNG if ``palette``)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be H×W uint8, got {labels.dtype} {labels.shape}")
    atomic_write_bytes(Path(path), encode_png(labels, palette=palette))


def write_segment_map(path: Path, segments: np.ndarray) -> None:
    """Atomically write an ``H×W`` segment map as 8-bit PNG, or 16-bit above id 255."""
    segments = np.asarray(segments)
    if segments.ndim != 2 or segments.dtype.kind not in "iu":
        raise ValueError(
            f"segments must be an H×W integer array, got {segments.dtype} {segments.shape}"
        )
    top = int(segments.max()) if segments.size else 0
    if segments.size and segments.min() < 0:
        raise ValueError("segment ids must be >= 0")
    if top > MAX_SEGMENT_ID:
        raise ValueError(f"segment id {top} exceeds {MAX_SEGMENT_ID}, the 16-bit PNG limit")
    dtype = np.uint8 if top <= 255 else np.uint16
    atomic_write_bytes(Path(path), encode_png(segments.astype(dtype)))
