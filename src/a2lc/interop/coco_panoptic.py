"""COCO panoptic: one PNG of segment ids per image plus ``segments_info`` JSON.

The standard layout (what COCO's tools and datumaro's ``coco_panoptic`` read):
``annotations/panoptic_<subset>.json`` and the PNGs in
``annotations/panoptic_<subset>/``, ``<subset>`` being the workspace's split.
By default the labels are converted as COCO panoptic users convert semantic
labels (each stuff class one segment, each connected region of a thing class one
segment, every pixel its own class); ``units="segments"`` writes one segment per
a2lc segment (SAM-style) with the majority of its current labels instead. Segment ids are encoded ``R + 256·G + 256²·B``; id 0 is void.
Image ids are integers 1..N in pool order; each annotation's PNG is named
``<a2lc image id>.png``. Category ids are class id + 1 (COCO keeps 0 for
"nothing"); categories carry the class names, which is how an import maps them
back, and ``isthing`` from the class list (:attr:`~a2lc.data.sample.ClassInfo.thing`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from scipy import ndimage

from a2lc._atomic import atomic_write_text
from a2lc._json import read_json
from a2lc.data.images import read_image
from a2lc.data.maps import write_png_image
from a2lc.data.sample import IGNORE_INDEX
from a2lc.data.segments import label_histograms, segment_sizes
from a2lc.errors import DataError, Problem
from a2lc.pseudo_labels.segments import relabel_consecutive
from a2lc.workspace import Workspace

LEGACY_PNG_FOLDER = "panoptic"
"""Where a2lc 0.1's exports kept the PNGs (beside ``panoptic.json``); still read."""
INFO = {
    "description": "exported by a2lc (current labels of a label-correction workspace)",
    "version": "1.0",
}


def link_image(source: Path, destination: Path) -> None:
    """``destination`` as a hard link to ``source`` (no space used), a copy across devices.

    Not a symbolic link: tools that keep paths inside their folder (datumaro
    resolves links) would refuse it.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.is_symlink() or destination.exists():
        destination.unlink()
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def panoptic_paths(out: Path, subset: str) -> tuple[Path, Path]:
    """``(JSON, PNG folder)`` of a COCO panoptic export of ``subset`` under ``out``."""
    annotations = Path(out) / "annotations"
    return annotations / f"panoptic_{subset}.json", annotations / f"panoptic_{subset}"


def png_folder(json_path: Path) -> Path:
    """The PNG folder of a panoptic JSON: the folder named after it, else ``panoptic/``."""
    named = json_path.with_suffix("")
    return named if named.is_dir() else json_path.parent / LEGACY_PNG_FOLDER


def ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """``H×W`` ids → ``H×W×3`` uint8 (``R + 256·G + 256²·B``)."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids & 0xFF, (ids >> 8) & 0xFF, (ids >> 16) & 0xFF], axis=-1).astype(np.uint8)


def rgb_to_ids(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return np.asarray(rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2])


PanopticUnits = Literal["standard", "segments"]
PANOPTIC_UNITS = ("standard", "segments")
EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


def standard_panoptic(labels: np.ndarray, things: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Panoptic segments of a semantic label map, as its users convert one.

    ``labels``: ``H×W`` class ids (255: void); ``things``: ``(C,)`` bool per class.
    Each stuff class present is one segment; each thing class gives one segment per
    connected region (8-neighbour). Returns ``(H×W`` int64 ids, 0 = void; ``(M,)``
    class of ids 1..M).
    """
    labels = np.asarray(labels, dtype=np.int64)
    things = np.asarray(things, dtype=bool)
    ids = np.zeros(labels.shape, dtype=np.int64)
    classes: list[int] = []
    for cls in np.unique(labels):
        if cls == IGNORE_INDEX or cls >= things.size:
            continue
        mask = labels == cls
        if things[cls]:
            parts, count = ndimage.label(mask, structure=EIGHT_NEIGHBOURS)
            ids[mask] = parts[mask] + len(classes)
            classes.extend([int(cls)] * count)
        else:
            classes.append(int(cls))
            ids[mask] = len(classes)
    return ids, np.asarray(classes, dtype=np.int64)


def export_panoptic(
    ws: Workspace,
    out: Path,
    *,
    units: PanopticUnits = "standard",
    labels_of: Callable[[str], np.ndarray] | None = None,
) -> dict[str, int]:
    """Write :func:`panoptic_paths` (the standard layout) for every image of the pool.

    ``units``: ``standard`` (the default) converts the labels as COCO panoptic users
    do (:func:`standard_panoptic`: a stuff class is one segment, a thing class one per
    connected region, every pixel its own label); ``segments`` writes one panoptic
    segment per a2lc segment with its majority class (what a2lc imports back as its
    segments). ``images/<split>/`` links to the images (COCO's layout; datumaro needs it).
    ``labels_of``: an image id's ``H×W`` labels to write instead of the current ones (for
    instance :meth:`Workspace.read_ground_truth`, to measure against it).
    """
    if units not in PANOPTIC_UNITS:
        raise ValueError(f"units must be one of {PANOPTIC_UNITS}, got {units!r}")
    ws.require_segments()
    json_path, folder = panoptic_paths(out, ws.dataset.split)
    num_classes = ws.num_classes
    things = np.asarray([c.thing for c in ws.dataset.classes], dtype=bool)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    total = 0
    for number, sample in enumerate(ws.samples, start=1):
        segments = ws.read_segments(sample.id)
        labels = (
            labels_of(sample.id)
            if labels_of is not None
            else ws.read_labels(sample.id, segments=segments)
        )
        if units == "standard":
            segments, per_id = standard_panoptic(labels, things)
            ids, sizes = segment_sizes(segments)
            majority = per_id[ids - 1]
            has_class = np.ones(ids.size, dtype=bool)
        else:
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
        write_png_image(folder / file_name, picture)
        link_image(
            Path(sample.image_path),
            Path(out) / "images" / ws.dataset.split / Path(sample.image_path).name,
        )
        images.append(
            {
                "id": number,
                "file_name": Path(sample.image_path).name,
                "width": sample.width,
                "height": sample.height,
                "license": 0,
            }
        )
        annotations.append({"image_id": number, "file_name": file_name, "segments_info": infos})
        total += len(infos)
    categories = [
        {
            "id": c.id + 1,
            "name": c.name,
            "color": list(c.color),
            "isthing": int(c.thing),
            "supercategory": "thing" if c.thing else "stuff",
        }
        for c in ws.dataset.classes
    ]
    document = {
        "info": INFO,
        "licenses": [{"id": 0, "name": "as the source dataset", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    atomic_write_text(json_path, json.dumps(document))
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


def _image_names(images: object) -> dict[object, str]:
    """``images[].id`` → the stem of ``images[].file_name`` (entries that have both)."""
    names: dict[object, str] = {}
    if isinstance(images, list):
        for image in images:
            if isinstance(image, dict) and isinstance(image.get("file_name"), str):
                image_id = image.get("id")
                if isinstance(image_id, str | int) and not isinstance(image_id, bool):
                    names[image_id] = Path(image["file_name"]).stem
    return names


def read_panoptic(path: Path, ws: Workspace) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(image id, segments, labels)`` per workspace image from a panoptic JSON + PNG folder.

    The PNGs are in the folder named after the JSON (the standard layout), or in
    ``panoptic/`` beside it. Images are matched by the annotation PNG's file stem,
    the image's file name's stem (from ``images``), or a string ``image_id``;
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
    image_names = _image_names(document.get("images"))
    by_image: dict[str, dict[str, Any]] = {}
    for annotation in annotations:
        by_image[Path(str(annotation["file_name"])).stem] = annotation
    for annotation in annotations:
        image_id = annotation["image_id"]
        if image_id in image_names:
            by_image.setdefault(image_names[image_id], annotation)
        by_image.setdefault(str(image_id), annotation)
    folder = png_folder(path)
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
        ids = rgb_to_ids(read_image(png))  # (refuses decompression bombs by name)
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


# --------------------------------------------------------------------------- PQ

PQ_MATCH_IOU = 0.5
"""A predicted and a ground-truth segment of one category match above this IoU (unique)."""
VOID_SHARE = 0.5
"""An unmatched prediction more than this share void (in the ground truth) is not a false positive."""


def panoptic_quality(ground_truth: Path, prediction: Path) -> dict[str, dict[str, float]]:
    """Panoptic quality (Kirillov et al. 2019) of ``prediction`` against ``ground_truth``.

    Both are COCO panoptic JSONs with their PNG folders (as :func:`png_folder`
    finds them); images are matched by the annotation PNG's file name,
    categories by id. As the COCO panoptic tool: segments match when their IoU
    exceeds 0.5 (void pixels of the ground truth left out of the union), an
    unmatched prediction that is mostly void is not counted, crowd segments are
    not used. Returns ``{"All" | "Things" | "Stuff" | <category name>: {"pq",
    "sq", "rq", "n"}}`` (fractions; a group with no category has n = 0 and is
    left out of the averages rather than dividing by zero).
    """
    gt_doc, pred_doc = read_json(Path(ground_truth)), read_json(Path(prediction))
    categories = {int(c["id"]): c for c in gt_doc["categories"]}
    stats = {cid: np.zeros(4) for cid in categories}  # iou sum, tp, fp, fn
    predicted = {a["file_name"]: a for a in pred_doc["annotations"]}
    for gt_ann in gt_doc["annotations"]:
        pred_ann = predicted.get(gt_ann["file_name"])
        if pred_ann is None:
            raise DataError(Problem(Path(prediction), f"no annotation for {gt_ann['file_name']}"))
        gt_ids = _png_ids(png_folder(Path(ground_truth)) / gt_ann["file_name"])
        pred_ids = _png_ids(png_folder(Path(prediction)) / pred_ann["file_name"])
        if gt_ids.shape != pred_ids.shape:
            raise DataError(Problem(Path(prediction), f"{gt_ann['file_name']}: sizes differ"))
        _accumulate(stats, gt_ann, pred_ann, gt_ids, pred_ids)
    result: dict[str, dict[str, float]] = {}
    per_class: dict[int, tuple[float, float, float]] = {}
    for cid, (iou, tp, fp, fn) in stats.items():
        if tp + fp + fn == 0:
            continue
        sq = iou / tp if tp else 0.0
        rq = tp / (tp + 0.5 * fp + 0.5 * fn)
        per_class[cid] = (sq * rq, sq, rq)
        result[str(categories[cid]["name"])] = {"pq": sq * rq, "sq": sq, "rq": rq, "n": 1.0}
    thing = {cid: bool(categories[cid].get("isthing")) for cid in per_class}
    for group, members in (
        ("All", list(per_class)),
        ("Things", [cid for cid in per_class if thing[cid]]),
        ("Stuff", [cid for cid in per_class if not thing[cid]]),
    ):
        chosen = [per_class[cid] for cid in members]
        n = len(chosen)
        mean = np.mean(chosen, axis=0) if n else np.zeros(3)
        result[group] = {"pq": float(mean[0]), "sq": float(mean[1]), "rq": float(mean[2]), "n": n}
    return result


def _png_ids(path: Path) -> np.ndarray:
    return rgb_to_ids(read_image(path))


def _accumulate(
    stats: dict[int, np.ndarray],
    gt_ann: dict[str, Any],
    pred_ann: dict[str, Any],
    gt_ids: np.ndarray,
    pred_ids: np.ndarray,
) -> None:
    gt_info = {int(s["id"]): s for s in gt_ann["segments_info"] if not s.get("iscrowd")}
    pred_info = {int(s["id"]): s for s in pred_ann["segments_info"]}
    # Joint histogram of (gt id, pred id) over every pixel, from one bincount.
    gt_flat, pred_flat = gt_ids.ravel(), pred_ids.ravel()
    width = int(pred_flat.max(initial=0)) + 1
    pairs, counts = np.unique(gt_flat * width + pred_flat, return_counts=True)
    overlap = {
        (int(p // width), int(p % width)): int(c) for p, c in zip(pairs, counts, strict=True)
    }
    gt_sizes = np.bincount(gt_flat)
    pred_sizes = np.bincount(pred_flat)
    gt_area = {i: int(gt_sizes[i]) if i < gt_sizes.size else 0 for i in gt_info}
    pred_area = {i: int(pred_sizes[i]) if i < pred_sizes.size else 0 for i in pred_info}
    matched_gt: set[int] = set()
    matched_pred: set[int] = set()
    for (g, p), inter in overlap.items():
        if g not in gt_info or p not in pred_info:
            continue
        if gt_info[g]["category_id"] != pred_info[p]["category_id"]:
            continue
        union = gt_area[g] + pred_area[p] - inter - overlap.get((0, p), 0)
        iou = inter / union if union else 0.0
        if iou > PQ_MATCH_IOU:
            stats[int(gt_info[g]["category_id"])][:2] += (iou, 1)
            matched_gt.add(g)
            matched_pred.add(p)
    for g, info in gt_info.items():
        if g not in matched_gt and int(info["category_id"]) in stats:
            stats[int(info["category_id"])][3] += 1
    for p, info in pred_info.items():
        if p in matched_pred or int(info["category_id"]) not in stats:
            continue
        if pred_area[p] and overlap.get((0, p), 0) / pred_area[p] > VOID_SHARE:
            continue
        stats[int(info["category_id"])][2] += 1
