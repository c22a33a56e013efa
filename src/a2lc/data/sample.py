"""The sample, class and dataset types shared by every reader."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from a2lc.errors import Problem

IGNORE_INDEX = 255
"""Label value meaning "no class": void ground truth, or a pixel no segment covers."""


THING_NAMES = frozenset(
    {
        # Countable objects in the usual benchmarks (Cityscapes' eight instance classes,
        # CamVid's, VOC's 20); poles, signs and lights are stuff, as in Cityscapes panoptic.
        "person", "pedestrian", "rider", "bicyclist", "cyclist", "motorcyclist",
        "car", "truck", "bus", "train", "motorcycle", "motorbike", "bicycle", "vehicle",
        "caravan", "trailer", "aeroplane", "airplane", "boat", "bird", "cat", "cow", "dog",
        "horse", "sheep", "animal", "bottle", "chair", "diningtable", "pottedplant", "sofa",
        "tvmonitor",
    }
)  # fmt: skip
"""Class names that are *things* (countable instances) when a class list does not say."""


@dataclass(frozen=True)
class ClassInfo:
    """One semantic class: its id (0..C-1), display name and RGB colour.

    ``isthing``: a countable object (car) rather than *stuff* (road, sky), as COCO
    panoptic needs it; None when the class list does not say (see :attr:`thing`).
    """

    id: int
    name: str
    color: tuple[int, int, int]
    isthing: bool | None = None

    @property
    def thing(self) -> bool:
        """``isthing`` if given, else whether the name is in :data:`THING_NAMES`."""
        if self.isthing is not None:
            return self.isthing
        return self.name.strip().lower().replace("_", " ") in THING_NAMES


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    ``id`` is unique within the dataset and stable across runs (the file stem);
    ``width``/``height`` are in pixels; ``gt_path`` is None without ground truth.
    """

    id: str
    image_path: Path
    gt_path: Path | None
    width: int
    height: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``, the shape of this image's label and segment maps."""
        return (self.height, self.width)


@dataclass(frozen=True)
class Dataset:
    """A split of a dataset: its classes and samples.

    ``gt_lut`` maps every raw ground-truth pixel value (0..255) to a class id,
    255 for void, or -1 for a value that is not allowed (reported as an error).
    """

    format: str
    root: Path
    split: str
    classes: tuple[ClassInfo, ...]
    samples: tuple[Sample, ...]
    gt_lut: np.ndarray = field(repr=False, compare=False)
    problems: tuple[Problem, ...] = field(default=(), repr=False, compare=False)
    """Per-file problems found while reading the layout (unreadable images, unsafe
    ids); the affected images are not in :attr:`samples`. Only a non-strict
    :func:`~a2lc.data.readers.load_dataset` returns a dataset that has any."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def has_ground_truth(self) -> bool:
        """Whether every image has ground truth (what the simulated annotator needs)."""
        return bool(self.samples) and self.ground_truth_count == len(self.samples)

    @cached_property
    def ground_truth_count(self) -> int:
        """How many images have ground truth (metrics use these)."""
        return sum(s.gt_path is not None for s in self.samples)

    @cached_property
    def _by_id(self) -> dict[str, Sample]:
        return {sample.id: sample for sample in self.samples}

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {sample.id: i for i, sample in enumerate(self.samples)}

    def positions(self, sample_ids: Sequence[str]) -> np.ndarray:
        """``(len(sample_ids),)`` int64 position of each id in :attr:`samples` (a dict lookup)."""
        try:
            return np.asarray([self._positions[i] for i in sample_ids], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"no sample {exc.args[0]!r} in {self.root} ({self.split})") from None

    def sample(self, sample_id: str) -> Sample:
        """The sample with this id (a dictionary lookup, built on first use)."""
        try:
            return self._by_id[sample_id]
        except KeyError:
            raise KeyError(f"no sample {sample_id!r} in {self.root} ({self.split})") from None


def unsafe_id_reason(sample_id: str) -> str | None:
    """Why ``sample_id`` cannot name files in a workspace (None if it can).

    Ids become file names (``segments/<id>.png``), so they must stay one plain name:
    no path separators, not ``.`` or ``..``, no control characters.
    """
    if not sample_id:
        return "an empty image id"
    if sample_id in (".", ".."):
        return f"image id {sample_id!r} is not a file name"
    if "/" in sample_id or "\\" in sample_id:
        return f"image id {sample_id!r} contains a path separator (it would leave its folder)"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in sample_id):
        return f"image id {sample_id!r} contains control characters"
    try:
        sample_id.encode("utf-8")
    except UnicodeEncodeError:
        return f"image id {sample_id!r} is not valid UTF-8 (rename the file)"
    return None


def identity_lut(num_classes: int) -> np.ndarray:
    """LUT for label files that already hold class ids: 0..C-1 and 255 valid."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut
