"""CVAT "Segmentation mask 1.1": export the corrected dataset, import initial pseudo-labels.

Layout (as CVAT writes and reads it)::

    labelmap.txt                      # label:color_rgb:parts:actions
    ImageSets/Segmentation/default.txt
    SegmentationClass/<id>.png        # class colours (palette PNG), background = void
    SegmentationObject/<id>.png       # instance index per segment (palette PNG, VOC colours)

Classes are matched by name (case-insensitive); ``background`` is void (255).
Instances use the PASCAL VOC instance palette (index i has VOC colour i), which
is what CVAT and datumaro read, so an image holds at most
:data:`MAX_INSTANCES` segments; an export with more is refused before anything
is written (COCO panoptic has no such limit). Any colour coding is read back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from a2lc._atomic import atomic_write_text
from a2lc.data.images import read_image
from a2lc.data.maps import write_png_image
from a2lc.data.readers import voc_palette
from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import DataError, Problem
from a2lc.interop.rle import runs
from a2lc.pseudo_labels.segments import relabel_consecutive
from a2lc.workspace import Workspace

BACKGROUND = "background"
BACKGROUND_COLOR = (0, 0, 0)
MAX_INSTANCES = 254
"""VOC instance indices 1..254 (0 is background, 255 the VOC "void" border)."""


def export_cvat(ws: Workspace, out: Path) -> int:
    """Write the current labels and segments of every image; returns the image count."""
    ws.require_segments()
    colors = [tuple(c) for c in ws.palette]
    if BACKGROUND_COLOR in colors:
        raise DataError(
            Problem(
                ws.path,
                f"class {ws.class_names[colors.index(BACKGROUND_COLOR)]!r} is black, "
                "CVAT's background colour; give it another colour in classes.json",
            )
        )
    lines = ["# label:color_rgb:parts:actions", f"{BACKGROUND}:0,0,0::"]
    lines += [
        f"{name}:{r},{g},{b}::" for name, (r, g, b) in zip(ws.class_names, colors, strict=True)
    ]
    palette = [*BACKGROUND_COLOR, *(v for c in colors for v in c)]
    instance_palette = [int(v) for v in voc_palette(256).ravel()]
    too_many = [
        (s.id, n) for s in ws.samples if (n := ws.segment_table(s.id).ids.size) > MAX_INSTANCES
    ]
    if too_many:
        shown = ", ".join(f"{i} ({n})" for i, n in too_many[:5])
        raise DataError(
            Problem(
                ws.path,
                f"CVAT's mask format holds at most {MAX_INSTANCES} segments per image; "
                f"{len(too_many)} image(s) have more: {shown}. Use --format coco-panoptic",
            )
        )
    for sample in ws.samples:
        segments = ws.read_segments(sample.id)
        labels = ws.read_labels(sample.id, segments=segments)
        index = np.where(labels == IGNORE_INDEX, 0, labels.astype(np.int64) + 1).astype(np.uint8)
        image = Image.fromarray(index, mode="P")
        image.putpalette(palette)
        write_png_image(out / "SegmentationClass" / f"{sample.id}.png", image)
        # Instance index: the segment's rank in the image (1..254), 0 where no class.
        instances = relabel_consecutive(np.where(labels == IGNORE_INDEX, 0, segments))
        objects = Image.fromarray(instances.astype(np.uint8), mode="P")
        objects.putpalette(instance_palette)
        write_png_image(out / "SegmentationObject" / f"{sample.id}.png", objects)
    atomic_write_text(out / "labelmap.txt", "\n".join(lines) + "\n")
    atomic_write_text(
        out / "ImageSets" / "Segmentation" / "default.txt",
        "".join(f"{s.id}\n" for s in ws.samples),
    )
    upload = out / UPLOAD
    files = [
        out / "labelmap.txt",
        out / "ImageSets" / "Segmentation" / "default.txt",
        *(out / "SegmentationClass" / f"{s.id}.png" for s in ws.samples),
        *(out / "SegmentationObject" / f"{s.id}.png" for s in ws.samples),
    ]
    _write_zip(upload / MASK_ZIP, {str(f.relative_to(out)): f.read_bytes() for f in files})
    _write_zip(upload / XML_ZIP, {"annotations.xml": cvat_for_images_xml(ws).encode()})
    return len(ws.samples)


UPLOAD = Path("upload")
"""Where :func:`export_cvat` puts the archives CVAT's upload dialog takes."""
MASK_ZIP = "segmentation-mask-1.1.zip"
XML_ZIP = "cvat-for-images-1.1.zip"


def _write_zip(path: Path, members: dict[str, bytes]) -> None:
    """A zip of ``members`` (name → bytes), written whole or not at all."""
    import io
    import zipfile

    from a2lc._atomic import atomic_write

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def mask_rle(mask: np.ndarray) -> list[int]:
    """CVAT's mask ``rle``: run lengths over the ``H×W`` bool ``mask`` read row by row,
    starting with a run of outside pixels (0 when it starts inside)."""
    flat = np.asarray(mask, dtype=bool).ravel()
    if flat.size == 0:
        return []
    lengths = runs(flat)[1].tolist()
    return [0, *lengths] if flat[0] else lengths


def cvat_for_images_xml(ws: Workspace) -> str:
    """CVAT for images 1.1 annotations: every segment's pixels of each class as one mask.

    Pixel for pixel the current labels (void left out); a segment whose pixels hold
    several classes (a painted answer) gives one mask per class, in the same group.
    """
    from xml.sax.saxutils import quoteattr

    from scipy import ndimage

    names = ws.class_names
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<annotations>",
        "  <version>1.1</version>",
        "  <meta>",
        "    <task>",
        f"      <size>{len(ws.samples)}</size>",
        "      <mode>annotation</mode>",
        "      <labels>",
    ]
    for name, (r, g, b) in zip(names, ws.palette, strict=True):
        out += [
            "        <label>",
            f"          <name>{_text(name)}</name>",
            f"          <color>#{r:02x}{g:02x}{b:02x}</color>",
            "          <type>mask</type>",
            "          <attributes></attributes>",
            "        </label>",
        ]
    out += ["      </labels>", "    </task>", "  </meta>"]
    classes = len(names)
    for number, sample in enumerate(ws.samples):
        segments = ws.read_segments(sample.id).astype(np.int64)
        labels = ws.read_labels(sample.id, segments=segments).astype(np.int64)
        name = quoteattr(Path(sample.image_path).name)
        out.append(
            f'  <image id="{number}" name={name} width="{sample.width}" height="{sample.height}">'
        )
        known = (labels != IGNORE_INDEX) & (segments > 0)
        key = np.where(known, segments * classes + labels + 1, 0)
        values, inverse = np.unique(key, return_inverse=True)
        pieces = inverse.reshape(key.shape)  # position in values: one (segment, class) piece
        boxes = ndimage.find_objects(pieces + 1)  # find_objects counts labels from 1
        for index, value in enumerate(values.tolist()):
            if value == 0:  # void, or no segment
                continue
            rows, cols = boxes[index]
            segment, cls = divmod(int(value) - 1, classes)
            crop = pieces[rows, cols] == index
            rle = ",".join(map(str, mask_rle(crop)))
            out.append(
                f'    <mask label={quoteattr(names[cls])} source="manual" occluded="0" '
                f'rle="{rle}" left="{cols.start}" top="{rows.start}" '
                f'width="{cols.stop - cols.start}" height="{rows.stop - rows.start}" '
                f'z_order="0" group_id="{segment}"></mask>'
            )
        out.append("  </image>")
    out.append("</annotations>")
    return "\n".join(out) + "\n"


def _text(value: str) -> str:
    from xml.sax.saxutils import escape

    return escape(value)


def read_labelmap(path: Path, class_names: Sequence[str]) -> dict[tuple[int, int, int], int]:
    """Colour → class id (255 for background) from ``labelmap.txt``."""
    if not path.is_file():
        raise DataError(Problem(path, "no labelmap.txt: not a CVAT 'Segmentation mask 1.1' export"))
    index = {name.lower(): i for i, name in enumerate(class_names)}
    mapping: dict[tuple[int, int, int], int] = {}
    seen: dict[tuple[int, int, int], str] = {}
    problems = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(Problem(path, f"unreadable labelmap ({exc})")) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(":")
        try:
            name, color = parts[0].strip(), tuple(int(v) for v in parts[1].split(","))
            if len(color) != 3 or not all(0 <= v <= 255 for v in color):
                raise ValueError
        except (IndexError, ValueError):
            problems.append(
                Problem(f"{path}:{number}", f"expected name:r,g,b:: (0..255), got {line!r}")
            )
            continue
        if color in seen:
            problems.append(
                Problem(
                    f"{path}:{number}",
                    f"colour {list(color)} is already {seen[color]!r}: a colour names one label",
                )
            )
            continue
        seen[color] = name
        if name.lower() == BACKGROUND:
            mapping[color] = IGNORE_INDEX
        elif name.lower() in index:
            mapping[color] = index[name.lower()]
        else:
            problems.append(
                Problem(
                    f"{path}:{number}",
                    f"label {name!r} is not a class of the workspace ({', '.join(class_names)})",
                )
            )
    DataError.collect(problems)
    if not mapping:
        raise DataError(Problem(path, "names no label (expected lines name:r,g,b::)"))
    return mapping


def _color_keys(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return np.asarray((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])


def read_cvat(folder: Path, ws: Workspace) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(image id, segments, labels)`` per workspace image from a CVAT mask export."""
    mapping = read_labelmap(folder / "labelmap.txt", ws.class_names)
    keys = np.array([(r << 16) | (g << 8) | b for r, g, b in mapping], dtype=np.int64)
    classes = np.array(list(mapping.values()), dtype=np.int64)
    order = np.argsort(keys)
    keys, classes = keys[order], classes[order]
    for sample in ws.samples:
        class_path = folder / "SegmentationClass" / f"{sample.id}.png"
        rgb = read_image(class_path)
        if rgb.shape[:2] != sample.shape:
            raise DataError(
                Problem(class_path, f"size {rgb.shape[:2]} differs from the image's {sample.shape}")
            )
        color = _color_keys(rgb)
        where = np.searchsorted(keys, color).clip(0, keys.size - 1)
        unknown = keys[where] != color
        if unknown.any():
            bad = rgb[unknown][0].tolist()
            raise DataError(Problem(class_path, f"colour {bad} is not in labelmap.txt"))
        labels = classes[where].astype(np.uint8)
        object_path = folder / "SegmentationObject" / f"{sample.id}.png"
        if object_path.is_file():
            objects = read_image(object_path)
            if objects.shape[:2] != sample.shape:
                raise DataError(Problem(object_path, "size differs from the image's"))
            key = _color_keys(objects)
            key[labels == IGNORE_INDEX] = 0
        else:  # no instances: each connected region of one class is a segment
            from scipy import ndimage

            key = np.zeros(sample.shape, dtype=np.int64)
            offset = 0
            for c in np.unique(labels[labels != IGNORE_INDEX]):
                components, count = ndimage.label(labels == c)
                key[components > 0] = components[components > 0] + offset
                offset += count
        segments = relabel_consecutive(key)
        labels[segments == 0] = IGNORE_INDEX
        yield sample.id, segments, labels
