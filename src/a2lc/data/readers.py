"""Dataset readers: each turns a folder layout into one :class:`Dataset`.

Registered formats (``a2lc init --format``):

* ``folder``: ``images/<split>/*.{jpg,png}``, optional ``labels/<split>/<stem>.png``
  and ``classes.json`` (``[{"id", "name", "color"}]``): the layout of the CamVid copy.
* ``cityscapes``: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
  ``gtFine/<split>/<city>/*_gtFine_labelIds.png``, mapped to the 19 train ids.
* ``voc``: PASCAL VOC 2012, ``JPEGImages/``, ``SegmentationClass/`` and
  ``ImageSets/Segmentation/<split>.txt``; 21 classes, 255 = border.

``auto`` picks the format from the layout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a2lc._progress import progress
from a2lc.data.maps import image_size, read_label_map
from a2lc.data.sample import (
    IGNORE_INDEX,
    ClassInfo,
    Dataset,
    Sample,
    identity_lut,
    unsafe_id_reason,
)
from a2lc.errors import DataError, Problem, UnknownNameError
from a2lc.registry import Registry

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class DatasetFormat:
    """A registered layout: ``detect(root)`` says whether it fits, ``load`` reads it."""

    name: str
    detect: Callable[[Path], bool]
    load: Callable[[Path, str], Dataset]
    ground_truth_lut: Callable[[int], np.ndarray] = identity_lut


FORMATS: Registry[DatasetFormat] = Registry("dataset format")


def load_dataset(
    root: Path | str, *, split: str, format: str = "auto", strict: bool = True
) -> Dataset:
    """Read the ``split`` of the dataset at ``root``.

    Raises :class:`DataError` listing every problem found in the layout (missing
    folders, an empty split, unreadable images, unsafe ids). With ``strict=False``
    per-file problems are returned in :attr:`Dataset.problems` instead (the affected
    images left out), so a caller can report them with the problems it finds next.
    Label contents are checked by :func:`validate_dataset`. Images without a label
    file have no ground truth (any subset of a pool may have it).
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(Problem(root, "dataset folder does not exist"))
    if format == "auto":
        format = detect_format(root)
    dataset = FORMATS.get(format).load(root, split)
    if strict:
        DataError.collect(dataset.problems, summary=_summary(dataset.problems, root, split))
    return dataset


def _summary(problems: Sequence[Problem], root: Path, split: str) -> str:
    return f"{len(problems)} problem(s) in {root} ({split})"


def detect_format(root: Path) -> str:
    """Name of the registered format whose layout ``root`` has."""
    for name in FORMATS:
        if FORMATS.get(name).detect(root):
            return name
    raise DataError(
        Problem(
            root,
            "not a known dataset layout; expected one of: "
            "folder (images/<split>/, classes.json), cityscapes (leftImg8bit/, gtFine/), "
            "voc (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)",
        )
    )


def validate_dataset(
    dataset: Dataset, *, show_progress: bool = True, problems: list[Problem] | None = None
) -> None:
    """Decode every ground-truth file and raise one :class:`DataError` listing all problems.

    Checks per file: readable and complete, single channel, the size of its image,
    and only valid class ids (0..C-1 or 255 after the dataset's LUT). With a
    ``problems`` list, problems are appended there instead of raised.
    """
    collect = problems is None
    problems = [] if problems is None else problems
    samples = progress(
        dataset.samples, desc="checking labels", total=len(dataset.samples), enabled=show_progress
    )
    for sample in samples:
        if sample.gt_path is None:
            continue
        try:
            read_label_map(sample.gt_path, lut=dataset.gt_lut, shape=sample.shape)
        except DataError as exc:
            problems.extend(exc.problems)
    if collect:
        DataError.collect(problems, summary=_summary(problems, dataset.root, dataset.split))


def read_ground_truth(dataset: Dataset, sample: Sample) -> np.ndarray:
    """``H×W`` uint8 ground-truth class ids of ``sample`` (255 = void)."""
    if sample.gt_path is None:
        raise DataError(Problem(sample.image_path, "this image has no ground truth"))
    return read_label_map(sample.gt_path, lut=dataset.gt_lut, shape=sample.shape)


def _make_samples(
    entries: Iterable[tuple[str, Path, Path | None]], problems: list[Problem]
) -> tuple[Sample, ...]:
    samples: list[Sample] = []
    seen: dict[str, Path] = {}
    for sample_id, image_path, gt_path in entries:
        if sample_id in seen:
            problems.append(
                Problem(image_path, f"duplicate image id {sample_id!r} (also {seen[sample_id]})")
            )
            continue
        seen[sample_id] = image_path
        try:
            width, height = image_size(image_path)
        except DataError as exc:
            problems.extend(exc.problems)
            continue
        if gt_path is not None and not gt_path.is_file():
            # Ground truth may exist for any subset of the pool (the seed images, say);
            # but something at the label's path that is not a file is a mistake to name.
            if gt_path.is_symlink() or gt_path.exists():
                what = "a directory" if gt_path.is_dir() else "not a readable file"
                if gt_path.is_symlink() and not gt_path.exists():
                    what = "a link that leads nowhere (or to itself)"
                problems.append(Problem(gt_path, f"the label file is {what}"))
                continue
            gt_path = None
        samples.append(Sample(sample_id, image_path, gt_path, width, height))
    return tuple(samples)


def _finish(
    *,
    format: str,
    root: Path,
    split: str,
    classes: tuple[ClassInfo, ...],
    entries: list[tuple[str, Path, Path | None]],
    problems: list[Problem],
    split_dir: Path,
    gt_lut: np.ndarray,
) -> Dataset:
    if not entries and not problems:
        problems.append(Problem(split_dir, f"split {split!r} has no images"))
    unsafe = [(i, unsafe_id_reason(i)) for i, _, _ in entries]
    problems.extend(Problem(split_dir, reason) for _, reason in unsafe if reason is not None)
    entries = [entry for entry, (_, reason) in zip(entries, unsafe, strict=True) if reason is None]
    samples = _make_samples(entries, problems)
    if not samples:
        DataError.collect(problems, summary=_summary(problems, root, split))
    return Dataset(format, root, split, classes, samples, gt_lut, problems=tuple(problems))


# --------------------------------------------------------------------------- folder


def read_classes_json(path: Path) -> tuple[ClassInfo, ...]:
    """Read ``classes.json``: a list of ``{"id": int, "name": str, "color": [r, g, b]}``.

    ``color`` is optional (VOC's palette by default), and so is ``"isthing": bool``
    (COCO panoptic's thing/stuff; by default from the name, see :attr:`ClassInfo.thing`).
    """
    if not path.is_file():
        raise DataError(Problem(path, "classes.json is missing"))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(Problem(path, f"not valid JSON ({exc})")) from None
    except RecursionError:
        raise DataError(Problem(path, "not valid JSON (nested too deeply)")) from None
    if not isinstance(raw, list) or not raw:
        raise DataError(Problem(path, "must be a non-empty list of classes"))
    classes: list[ClassInfo] = []
    for position, item in enumerate(raw):
        try:
            class_id, name = item["id"], item["name"]
            # No truncation: 1.7 is not class 1, and "2" is not a number.
            if isinstance(class_id, bool) or not isinstance(class_id, int):
                raise TypeError
            if not isinstance(name, str) or not name.strip():
                raise TypeError
            color = item.get("color") or _fallback_color(class_id)
            if (
                not isinstance(color, list | tuple)
                or len(color) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in color)
            ):
                raise TypeError
            rgb = (int(color[0]), int(color[1]), int(color[2]))
            isthing = item.get("isthing")
            if isthing is not None and not isinstance(isthing, bool):
                raise TypeError
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise DataError(
                Problem(
                    path,
                    f"entry {position} needs an integer 'id', a 'name', an optional [r, g, b] "
                    "'color' and an optional true/false 'isthing'",
                )
            ) from None
        if not all(0 <= v <= 255 for v in rgb):
            raise DataError(
                Problem(path, f"entry {position}: color values must be 0..255, got {list(rgb)}")
            )
        classes.append(ClassInfo(class_id, name, rgb, isthing=isthing))
    names = [c.name.strip().lower() for c in classes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(Problem(path, f"class names must be unique, repeated: {duplicates}"))
    classes.sort(key=lambda c: c.id)
    ids = [c.id for c in classes]
    if ids != list(range(len(ids))):
        raise DataError(
            Problem(path, f"class ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        )
    if len(ids) >= IGNORE_INDEX:
        raise DataError(Problem(path, f"at most {IGNORE_INDEX} classes are supported"))
    return tuple(classes)


def _fallback_color(class_id: int) -> list[int]:
    return [int(v) for v in voc_palette(class_id + 1)[class_id]]


def _detect_folder(root: Path) -> bool:
    return (root / "images").is_dir() and (root / "classes.json").is_file()


def _load_folder(root: Path, split: str) -> Dataset:
    problems: list[Problem] = []
    classes = read_classes_json(root / "classes.json")
    image_dir = root / "images" / split
    label_dir = root / "labels" / split
    if not image_dir.is_dir():
        raise DataError(Problem(image_dir, f"split {split!r} not found (no such folder)"))
    has_labels = label_dir.is_dir()
    entries = [
        (path.stem, path, label_dir / f"{path.stem}.png" if has_labels else None)
        for path in sorted(image_dir.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    ]
    return _finish(
        format="folder",
        root=root,
        split=split,
        classes=classes,
        entries=entries,
        problems=problems,
        split_dir=image_dir,
        gt_lut=identity_lut(len(classes)),
    )


# --------------------------------------------------------------------------- cityscapes

# (label id, train id, name, colour) for the 19 evaluated Cityscapes classes;
# every other label id (0..33) maps to 255.
_CITYSCAPES: tuple[tuple[int, int, str, tuple[int, int, int]], ...] = (
    (7, 0, "road", (128, 64, 128)),
    (8, 1, "sidewalk", (244, 35, 232)),
    (11, 2, "building", (70, 70, 70)),
    (12, 3, "wall", (102, 102, 156)),
    (13, 4, "fence", (190, 153, 153)),
    (17, 5, "pole", (153, 153, 153)),
    (19, 6, "traffic light", (250, 170, 30)),
    (20, 7, "traffic sign", (220, 220, 0)),
    (21, 8, "vegetation", (107, 142, 35)),
    (22, 9, "terrain", (152, 251, 152)),
    (23, 10, "sky", (70, 130, 180)),
    (24, 11, "person", (220, 20, 60)),
    (25, 12, "rider", (255, 0, 0)),
    (26, 13, "car", (0, 0, 142)),
    (27, 14, "truck", (0, 0, 70)),
    (28, 15, "bus", (0, 60, 100)),
    (31, 16, "train", (0, 80, 100)),
    (32, 17, "motorcycle", (0, 0, 230)),
    (33, 18, "bicycle", (119, 11, 32)),
)
CITYSCAPES_NUM_LABEL_IDS = 34
CITYSCAPES_FIRST_THING = 11
"""Train ids 11..18 (person … bicycle) are Cityscapes' instance ("thing") classes."""


def cityscapes_lut() -> np.ndarray:
    """The standard Cityscapes label id → train id map (unlisted ids → 255, >33 invalid)."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[:CITYSCAPES_NUM_LABEL_IDS] = IGNORE_INDEX
    for label_id, train_id, _, _ in _CITYSCAPES:
        lut[label_id] = train_id
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def _detect_cityscapes(root: Path) -> bool:
    return (root / "leftImg8bit").is_dir()


def _load_cityscapes(root: Path, split: str) -> Dataset:
    classes = tuple(
        ClassInfo(t, n, c, isthing=t >= CITYSCAPES_FIRST_THING) for _, t, n, c in _CITYSCAPES
    )
    image_dir = root / "leftImg8bit" / split
    gt_dir = root / "gtFine" / split
    if not image_dir.is_dir():
        raise DataError(Problem(image_dir, f"split {split!r} not found (no such folder)"))
    has_gt = gt_dir.is_dir()
    suffix = "_leftImg8bit.png"
    entries: list[tuple[str, Path, Path | None]] = []
    for path in sorted(image_dir.glob(f"*/*{suffix}")):
        stem = path.name[: -len(suffix)]
        gt = gt_dir / path.parent.name / f"{stem}_gtFine_labelIds.png" if has_gt else None
        entries.append((stem, path, gt))
    return _finish(
        format="cityscapes",
        root=root,
        split=split,
        classes=classes,
        entries=entries,
        problems=[],
        split_dir=image_dir,
        gt_lut=cityscapes_lut(),
    )


# --------------------------------------------------------------------------- voc

VOC_CLASS_NAMES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved class ids), ``n×3`` uint8."""
    ids = np.arange(n)
    palette = np.zeros((n, 3), dtype=np.uint8)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= (((ids >> (3 * bit + channel)) & 1) << (7 - bit)).astype(
                np.uint8
            )
    return palette


def _voc_root(root: Path) -> Path:
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    return root


def _detect_voc(root: Path) -> bool:
    return (_voc_root(root) / "JPEGImages").is_dir()


def _load_voc(root: Path, split: str) -> Dataset:
    base = _voc_root(root)
    palette = voc_palette(len(VOC_CLASS_NAMES))
    classes = tuple(
        ClassInfo(
            i,
            name,
            (int(palette[i, 0]), int(palette[i, 1]), int(palette[i, 2])),
            isthing=i > 0,  # everything but the background is an object
        )
        for i, name in enumerate(VOC_CLASS_NAMES)
    )
    list_file = base / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not list_file.is_file():
        raise DataError(Problem(list_file, f"split {split!r} not found (no such list file)"))
    ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    gt_dir = base / "SegmentationClass"
    has_gt = gt_dir.is_dir()
    entries: list[tuple[str, Path, Path | None]] = [
        (i, base / "JPEGImages" / f"{i}.jpg", gt_dir / f"{i}.png" if has_gt else None) for i in ids
    ]
    return _finish(
        format="voc",
        root=base,
        split=split,
        classes=classes,
        entries=entries,
        problems=[],
        split_dir=list_file,
        gt_lut=identity_lut(len(classes)),
    )


FORMATS.add(
    "cityscapes",
    DatasetFormat("cityscapes", _detect_cityscapes, _load_cityscapes, lambda _: cityscapes_lut()),
)
FORMATS.add("folder", DatasetFormat("folder", _detect_folder, _load_folder))
FORMATS.add("voc", DatasetFormat("voc", _detect_voc, _load_voc))

__all__ = [
    "FORMATS",
    "DatasetFormat",
    "UnknownNameError",
    "cityscapes_lut",
    "detect_format",
    "load_dataset",
    "read_classes_json",
    "read_ground_truth",
    "validate_dataset",
    "voc_palette",
]
