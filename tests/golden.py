"""Reading golden-vector folders (the format of ``shared/golden/reference_seed0``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import shared_dir


@dataclass
class GoldenCase:
    path: Path
    arrays: dict[str, np.ndarray]
    expected: dict[str, Any]

    @property
    def images(self) -> list[str]:
        return list(self.expected["images"])

    @property
    def num_classes(self) -> int:
        return int(self.expected["num_classes"])

    def array(self, image: str, name: str) -> np.ndarray:
        return self.arrays[f"{image}.{name}"]


def golden_dirs() -> list[Path]:
    """Every folder under ``shared/golden/`` plus those in ``$A2LC_GOLDEN_DIRS`` (colon-separated)."""
    root = shared_dir() / "golden"
    dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    extra = os.environ.get("A2LC_GOLDEN_DIRS", "")
    dirs += [Path(p) for p in extra.split(":") if p]
    return dirs


def load_case(path: Path) -> GoldenCase:
    with np.load(path / "inputs_and_labels.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    expected = json.loads((path / "expected.json").read_text())
    return GoldenCase(path, arrays, expected)
