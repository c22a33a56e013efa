"""Reading RGB images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from a2lc.errors import DataError, Problem


def read_image(path: Path) -> np.ndarray:
    """``H×W×3`` uint8 RGB pixels of an image file."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise DataError(Problem(path, "image file is missing")) from None
    except Image.DecompressionBombError as exc:
        raise DataError(Problem(path, f"image too large to decode safely ({exc})")) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(Problem(path, f"unreadable image ({exc})")) from None
