"""a2lc: active and automated label correction for semantic segmentation.

Vocabulary used across the package: ``C`` classes, images of ``H×W`` pixels,
a *segment map* (``H×W`` int32, 0 = no segment), a *label map* (``H×W`` uint8,
255 = ignore), model probabilities ``C×H×W`` float32, and segments identified
by ``(image id, segment id)``.
"""

from a2lc.errors import A2LCError

__version__ = "0.1.0"

__all__ = ["A2LCError", "__version__"]
