"""COCO panoptic: one PNG of segment ids per image plus ``segments_info`` JSON.

Each segment is one mask (SAM-style) with one class: the majority of its
current labels. Segment ids are encoded ``R + 256·G + 256²·B``; id 0 is void.
Category ids are class id + 1 (COCO keeps 0 for "nothing"); categories carry
the class names, which is how an import maps them back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from a2lc._atomic import atomic_write_text
from a2lc._json import read_json
from a2lc.data.maps import write_png_image
from a2lc.data.sample import IGNORE_INDEX
from a2lc.data.segments import label_histograms, segment_sizes
from a2lc.errors import DataError, Problem
from a2lc.pseudo_labels.segments import relabel_consecutive
from a2lc.workspace import Workspace

PNG_FOLDER = "panoptic"
JSON_NAME = "panoptic.json"


def ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """``H×W`` ids → ``H×W×3`` uint8 (``R + 256·G + 256²·B``)."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids & 0xFF, (ids >> 8) & 0xFF, (ids >> 16) & 0xFF], axis=-1).astype(np.uint8)


def rgb_to_ids(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return np.asarray(rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2])


def export_panoptic(ws: Workspace, out: Path) -> dict[str, int]:
    """Write ``out/panoptic.json`` and ``out/panoptic/<id>.png`` for every image."""
    ws.require_segments()
    num_classes = ws.num_classes
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    total = 0
    for sample in ws.samples:
        segments = ws.read_segments(sample.id)
        labels = ws.read_labels(sample.id, segments=segments)
        ids, sizes = segment_sizes(segments)
        hist = label_histograms(labels, segments, ids)[:, :num_classes]
        majority = hist.argmax(axis=1)
        has_class = hist.sum(axis=1) > 0
        keep = np.zeros(int(segments.max(initial=0)) + 1, dtype=bool)
        keep[ids[has_class]] = True
        panoptic = np.where(keep[segments], segments, 0)
        boxes = ndimage.find_objects(segments)  # one pass: a (row, col) slice per id
        infos = []
        for seg_id, size, cls, ok in zip(ids, sizes, majority, has_class, strict=True):
            if not ok:
                continue
            rows, cols = boxes[seg_id - 1]
            infos.append(
                {
                    "id": int(seg_id),
                    "category_id": int(cls) + 1,
                    "area": int(size),
                    "bbox": [
                        cols.start,
                        rows.start,
                        cols.stop - cols.start,
                        rows.stop - rows.start,
                    ],
                    "iscrowd": 0,
                }
            )
        file_name = f"{sample.id}.png"
        picture = Image.fromarray(ids_to_rgb(panoptic), mode="RGB")
        write_png_image(out / PNG_FOLDER / file_name, picture)
        images.append(
            {
                "id": sample.id,
                "file_name": Path(sample.image_path).name,
                "width": sample.width,
                "height": sample.height,
            }
        )
        annotations.append({"image_id": sample.id, "file_name": file_name, "segments_info": infos})
        total += len(infos)
    categories = [
        {
            "id": c.id + 1,
            "name": c.name,
            "color": list(c.color),
            "isthing": 1,
            "supercategory": c.name,
        }
        for c in ws.dataset.classes
    ]
    document = {"images": images, "annotations": annotations, "categories": categories}
    atomic_write_text(out / JSON_NAME, json.dumps(document))
    return {"images": len(images), "segments": total}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _structure_problems(path: Path, annotations: object, categories: object) -> list[Problem]:
    """Every missing key or wrong type of the fields the import reads, before it reads them."""
    problems: list[Problem] = []
    if not isinstance(categories, list):
        return [Problem(path, "'categories' must be a list")]
    for n, category in enumerate(categories):
        if not isinstance(category, dict) or not _is_int(category.get("id")):
            problems.append(Problem(path, f"categories[{n}] needs an integer 'id'"))
        elif not isinstance(category.get("name"), str):
            problems.append(Problem(path, f"categories[{n}] needs a string 'name'"))
    if not isinstance(annotations, list):
        return [*problems, Problem(path, "'annotations' must be a list")]
    for n, annotation in enumerate(annotations):
        where = f"annotations[{n}]"
        if not isinstance(annotation, dict):
            problems.append(Problem(path, f"{where} must be an object"))
            continue
        if not isinstance(annotation.get("image_id"), str | int) or isinstance(
            annotation.get("image_id"), bool
        ):
            problems.append(Problem(path, f"{where} needs an integer or string 'image_id'"))
        if not isinstance(annotation.get("file_name"), str):
            problems.append(Problem(path, f"{where} needs a string 'file_name'"))
        infos = annotation.get("segments_info")
        if not isinstance(infos, list):
            problems.append(Problem(path, f"{where} needs a list 'segments_info'"))
            continue
        for k, info in enumerate(infos):
            if not (
                isinstance(info, dict)
                and _is_int(info.get("id"))
                and _is_int(info.get("category_id"))
            ):
                problems.append(
                    Problem(
                        path, f"{where}.segments_info[{k}] needs integer 'id' and 'category_id'"
                    )
                )
    return problems


def read_panoptic(path: Path, ws: Workspace) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(image id, segments, labels)`` per workspace image from a panoptic JSON + PNG folder.

    Images are matched by ``image_id`` or, failing that, by the PNG's file stem;
    categories by name (case-insensitive).
    """
    path = Path(path)
    document = read_json(path)
    try:
        annotations = document["annotations"]
        categories = document["categories"]
    except (KeyError, TypeError) as exc:
        raise DataError(Problem(path, f"not a COCO panoptic JSON ({exc})")) from None
    DataError.collect(
        _structure_problems(path, annotations, categories),
        summary=f"{path} is not a valid COCO panoptic JSON",
    )
    index = {name.lower(): i for i, name in enumerate(ws.class_names)}
    category_class: dict[int, int] = {}
    problems = []
    for category in categories:
        name = str(category.get("name", ""))
        if name.lower() not in index:
            problems.append(
                Problem(
                    path,
                    f"category {name!r} is not a class of the workspace ({', '.join(ws.class_names)})",
                )
            )
        else:
            category_class[int(category["id"])] = index[name.lower()]
    DataError.collect(problems)
    by_image: dict[str, dict[str, Any]] = {}
    for annotation in annotations:
        by_image[str(annotation["image_id"])] = annotation
        by_image.setdefault(Path(str(annotation["file_name"])).stem, annotation)
    folder = path.parent / PNG_FOLDER
    missing = [s.id for s in ws.samples if s.id not in by_image]
    if missing:
        raise DataError(
            Problem(path, f"no annotation for {len(missing)} images, e.g. {missing[:3]}")
        )
    for sample in ws.samples:
        annotation = by_image[sample.id]
        name = str(annotation["file_name"])
        if Path(name).name != name or name in (".", ".."):
            raise DataError(
                Problem(path, f"file_name {name!r} must be a file name inside {folder}")
            )
        png = folder / name
        try:
            with Image.open(png) as image:
                ids = rgb_to_ids(np.asarray(image.convert("RGB")))
        except (FileNotFoundError, OSError) as exc:
            raise DataError(Problem(png, f"missing or unreadable ({exc})")) from None
        if ids.shape != sample.shape:
            raise DataError(
                Problem(png, f"size {ids.shape} differs from the image's {sample.shape}")
            )
        top = int(ids.max(initial=0))
        table = np.full(top + 1, IGNORE_INDEX, dtype=np.int64)
        for info in annotation["segments_info"]:
            seg_id, category = int(info["id"]), int(info["category_id"])
            if category not in category_class:
                raise DataError(Problem(png, f"segment {seg_id} has unknown category {category}"))
            if seg_id <= top:
                table[seg_id] = category_class[category]
        labels = table[ids]
        described = labels != IGNORE_INDEX
        segments = relabel_consecutive(np.where(described, ids, 0))
        yield sample.id, segments, np.where(described, labels, IGNORE_INDEX).astype(np.uint8)
