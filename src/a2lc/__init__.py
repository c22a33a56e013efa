"""a2lc: active and automated label correction for semantic segmentation.

Vocabulary used across the package: ``C`` classes, images of ``H×W`` pixels,
a *segment map* (``H×W`` int32, 0 = no segment), a *label map* (``H×W`` uint8,
255 = ignore), model probabilities ``C×H×W`` float32, and segments identified
by ``(image id, segment id)``.
"""

from typing import TYPE_CHECKING, Any

from a2lc._version import __version__
from a2lc.errors import A2LCError

if TYPE_CHECKING:
    from a2lc.label_issues import LabelIssue, find_label_issues

_LAZY = {"find_label_issues": "a2lc.label_issues", "LabelIssue": "a2lc.label_issues"}
"""Names imported on first use, so ``import a2lc`` stays light (no numba compile)."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'a2lc' has no attribute {name!r}")


__all__ = ["A2LCError", "LabelIssue", "__version__", "find_label_issues"]
