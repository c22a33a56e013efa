"""Label Studio: the open round's queries as tasks, and the annotations back as answers.

Export writes ``tasks.json`` (one task per query: the image, one pre-filled
brush region for the segment labelled with its current class, the acquisition
score as the prediction's score) and ``labeling_config.xml`` (a ``BrushLabels``
control with every class and ``void``). Import reads Label Studio's JSON
export: per task, the latest annotation's brush label is the answer; the
current class means "keep", ``void`` or a deleted region means void.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from a2lc._atomic import atomic_write_text
from a2lc._json import read_json
from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import DataError, Problem, WorkspaceError
from a2lc.interop.rle import decode_mask, encode_mask
from a2lc.workspace import Answer, Workspace

VOID_NAME = "void"
FROM_NAME = "label"
TO_NAME = "image"
LOCAL_FILES_PREFIX = "/data/local-files/?d="
"""Label Studio serves local files under this URL (with LOCAL_FILES_SERVING_ENABLED)."""


def _hex(color: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{v:02x}" for v in color)


def labeling_config(class_names: list[str], colors: list[tuple[int, int, int]]) -> str:
    labels = "\n".join(
        f"    <Label value={quoteattr(name)} background={quoteattr(_hex(color))}/>"
        for name, color in zip(class_names, colors, strict=True)
    )
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n'
        f"{labels}\n"
        f'    <Label value="{VOID_NAME}" background="#000000"/>\n'
        "  </BrushLabels>\n"
        "</View>\n"
    )


def export_tasks(
    ws: Workspace, out: Path, *, image_prefix: str = LOCAL_FILES_PREFIX
) -> dict[str, Any]:
    """Write ``out/tasks.json`` and ``out/labeling_config.xml`` for the open round."""
    current = ws.open_round()
    if current is None:
        raise DataError(Problem(ws.path, "no open round: there are no queries to export"))
    names = list(ws.class_names)
    tasks = []
    segments_cache: dict[str, Any] = {}
    for query in ws.unanswered(current.round):
        if query.image_id not in segments_cache:
            segments_cache = {query.image_id: ws.read_segments(query.image_id)}
        segments = segments_cache[query.image_id]
        table = ws.segment_table(query.image_id)
        label = int(table.label[table.ids.tolist().index(query.segment_id)])
        sample = ws.sample(query.image_id)
        region = {
            "id": f"{query.image_id}_{query.segment_id}",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "brushlabels",
            "original_width": sample.width,
            "original_height": sample.height,
            "image_rotation": 0,
            "value": {
                "format": "rle",
                "rle": encode_mask(segments == query.segment_id),
                "brushlabels": [VOID_NAME if label == IGNORE_INDEX else names[label]],
            },
        }
        tasks.append(
            {
                "data": {
                    TO_NAME: f"{image_prefix}{Path(sample.image_path).resolve()}",
                    "image_id": query.image_id,
                    "segment_id": query.segment_id,
                    "round": current.round,
                    "rank": query.rank,
                },
                "predictions": [
                    {
                        "model_version": f"a2lc-round-{current.round}",
                        "score": query.score,
                        "result": [region],
                    }
                ],
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "tasks.json", json.dumps(tasks))
    atomic_write_text(out / "labeling_config.xml", labeling_config(names, ws.palette))
    return {"round": current.round, "tasks": len(tasks)}


def read_answers(ws: Workspace, path: Path) -> list[Answer]:
    """Answers from a Label Studio JSON export (validated against the open round by the caller)."""
    tasks = read_json(path)
    if not isinstance(tasks, list):
        raise DataError(Problem(path, "expected Label Studio's JSON export: a list of tasks"))
    index = {name: i for i, name in enumerate(ws.class_names)}
    answers: list[Answer] = []
    problems: list[Problem] = []
    for n, task in enumerate(tasks):
        where = f"{path} task {n}"
        data = task.get("data") if isinstance(task, dict) else None
        image_id = data.get("image_id") if isinstance(data, dict) else None
        segment_id = data.get("segment_id") if isinstance(data, dict) else None
        if (
            not isinstance(image_id, str)
            or isinstance(segment_id, bool)
            or not isinstance(segment_id, int)
        ):
            problems.append(
                Problem(
                    where,
                    "data.image_id must be a string and data.segment_id an integer "
                    "(not an a2lc task?)",
                )
            )
            continue
        annotations = task.get("annotations")
        if annotations is not None and not isinstance(annotations, list):
            problems.append(Problem(where, "'annotations' must be a list"))
            continue
        done = [a for a in annotations or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not done:
            continue  # not annotated yet
        latest = max(
            done,
            key=lambda a: (
                str(a.get("updated_at") or ""),
                a.get("id") if isinstance(a.get("id"), int) else 0,
            ),
        )
        result = latest.get("result")
        if result is not None and not isinstance(result, list):
            problems.append(Problem(where, "the annotation's 'result' must be a list of regions"))
            continue
        regions = [
            r for r in result or [] if isinstance(r, dict) and r.get("type") == "brushlabels"
        ]
        try:
            sample = ws.sample(image_id)
        except WorkspaceError:
            problems.append(Problem(where, f"no image {image_id!r} in this workspace"))
            continue
        bad_shape = _region_shape_problem(regions, sample.height, sample.width)
        if bad_shape is not None:
            problems.append(Problem(where, bad_shape))
            continue
        names = [str(x) for r in regions for x in (r.get("value") or {}).get("brushlabels") or []]
        if len(set(names)) > 1:
            problems.append(Problem(where, f"the region has several labels {sorted(set(names))}"))
            continue
        if not names or names[0] == VOID_NAME:
            label: int | None = IGNORE_INDEX
        elif names[0] in index:
            label = index[names[0]]
        else:
            problems.append(
                Problem(
                    where, f"unknown label {names[0]!r}; valid: {', '.join([*index, VOID_NAME])}"
                )
            )
            continue
        table = ws.segment_table(image_id)
        ids = table.ids.tolist()
        if segment_id in ids and label == int(table.label[ids.index(segment_id)]):
            label = None  # the current class confirmed: keep the segment's pixels as they are
        who = latest.get("completed_by")
        annotator = (
            str(who.get("email") if isinstance(who, dict) else who) if who else "label-studio"
        )
        answers.append(Answer(image_id, segment_id, label, annotator))
    DataError.collect(problems)
    return answers


def _region_shape_problem(regions: list[dict[str, Any]], height: int, width: int) -> str | None:
    """Why a region's brush cannot belong to this image (its size or RLE), or None."""
    for region in regions:
        value = region.get("value")
        if not isinstance(value, dict):
            return "a region has no 'value' object"
        size = (region.get("original_height"), region.get("original_width"))
        if size != (None, None) and size != (height, width):
            return (
                f"a region was drawn on a {size[1]}×{size[0]} image, this one is {width}×{height}"
            )
        rle = value.get("rle")
        if rle is not None:
            try:
                decode_mask(rle, height=height, width=width)
            except ValueError as exc:
                return f"a region's brush does not decode for this image ({exc})"
    return None


def import_answers(ws: Workspace, path: Path) -> dict[str, int]:
    """Record the answers of a Label Studio export in one transaction (all or nothing)."""
    current = ws.open_round()
    if current is None:
        raise DataError(Problem(ws.path, "no open round to take answers"))
    answers = read_answers(ws, path)
    ws.record_answers(current.round, answers)
    return {
        "round": current.round,
        "answers": len(answers),
        "unanswered": ws.count_unanswered(current.round),
    }
