"""Label Studio: the open round's queries as tasks, and the annotations back as answers.

Export writes ``tasks.json`` (one task per query: the image, one pre-filled
brush region for the segment labelled with its current class, the prediction's
score normalised to 0–1 as Label Studio requires, the rank and raw acquisition
score in the task's ``meta``) and ``labeling_config.xml`` (a ``BrushLabels``
control with every class and ``void``). Import reads Label Studio's JSON or
``JSON_MIN`` export: per task, the latest annotation's brush label is the
answer; the current class means "keep", ``void`` or a deleted region means void.

What an import does with each task:

* answers of the open round's unanswered queries are recorded (in one transaction);
* an answer already recorded with the same class is skipped (re-importing a full
  export is harmless); one recorded with another class is reported, not changed;
* a task whose brush was repainted (its pixels are not the segment's: a mixed
  segment split by painting its parts) becomes a painted answer, as the annotation
  app gives: each region's class on its pixels inside the segment, pixels of the
  segment no region covers void; pixels painted outside the segment are left out
  (a2lc answers one segment at a time, and the segment map every score refers to
  does not change mid-round) and counted in the import's summary;
* several labels on one region: the pre-filled current class is dropped (Label
  Studio keeps it when another label is added); one label left is the answer,
  several are refused as ambiguous;
* a file that is not a Label Studio export of a2lc's tasks, an unknown label or a
  brush that does not fit its image refuses the whole file (nothing recorded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from a2lc._atomic import atomic_write_text
from a2lc._json import read_json
from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import DataError, Problem, WorkspaceError
from a2lc.interop.rle import decode_mask, encode_mask
from a2lc.workspace import Answer, Query, Workspace

VOID_NAME = "void"
FROM_NAME = "label"
TO_NAME = "image"
LOCAL_FILES_PREFIX = "/data/local-files/?d="
"""Label Studio serves local files under this URL (with LOCAL_FILES_SERVING_ENABLED)."""


def normalised_score(score: float, top: float) -> float:
    """An acquisition score as Label Studio's 0–1 prediction score (the round's best = 1)."""
    if not top > 0 or not score > 0:
        return 0.0
    return min(1.0, float(score) / float(top))


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


def image_reference(image_path: Path, *, prefix: str, root: Path | None) -> str:
    """The task's image URL: ``prefix`` + the absolute path, or the path relative to
    ``root`` (Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``), which must contain it."""
    path = Path(image_path).resolve()
    if root is None:
        return f"{prefix}{path}"
    base = Path(root).resolve()
    if not path.is_relative_to(base):
        raise DataError(Problem(path, f"is not inside --image-root {base}"))
    return f"{prefix}{path.relative_to(base).as_posix()}"


def brush_region(
    *, region_id: str, mask: np.ndarray, label_name: str, width: int, height: int
) -> dict[str, Any]:
    """A Label Studio brush region: the ``H×W`` bool ``mask`` RLE-encoded, labelled
    ``label_name``, on an image ``width`` × ``height``."""
    return {
        "id": region_id,
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "type": "brushlabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": encode_mask(mask), "brushlabels": [label_name]},
    }


def query_region(ws: Workspace, query: Query, segments: np.ndarray) -> dict[str, Any]:
    """The queried segment as a pre-filled Label Studio brush region with its current class.

    ``segments`` is the query's image's ``H×W`` segment map.
    """
    table = ws.segment_table(query.image_id)
    label = int(table.label[table.ids.tolist().index(query.segment_id)])
    sample = ws.sample(query.image_id)
    return brush_region(
        region_id=f"{query.image_id}_{query.segment_id}",
        mask=segments == query.segment_id,
        label_name=VOID_NAME if label == IGNORE_INDEX else ws.class_names[label],
        width=sample.width,
        height=sample.height,
    )


def export_tasks(
    ws: Workspace,
    out: Path,
    *,
    image_prefix: str = LOCAL_FILES_PREFIX,
    image_root: Path | None = None,
) -> dict[str, Any]:
    """Write ``out/tasks.json`` and ``out/labeling_config.xml`` for the open round.

    ``image_root``: reference images relative to it (Label Studio's document root).
    """
    current = ws.open_round()
    if current is None:
        raise DataError(Problem(ws.path, "no open round: there are no queries to export"))
    tasks = round_tasks(ws, image_prefix=image_prefix, image_root=image_root)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "tasks.json", json.dumps(tasks))
    atomic_write_text(
        out / "labeling_config.xml", labeling_config(list(ws.class_names), ws.palette)
    )
    return {"round": current.round, "tasks": len(tasks)}


def round_tasks(
    ws: Workspace,
    *,
    image_prefix: str = LOCAL_FILES_PREFIX,
    image_root: Path | None = None,
    keys: set[tuple[str, int]] | None = None,
) -> list[dict[str, Any]]:
    """Label Studio tasks (with a2lc's prediction) of the open round's unanswered queries,
    in rank order; ``keys``: only these ``(image id, segment id)``. Empty without an
    open round."""
    current = ws.open_round()
    if current is None:
        return []
    tasks = []
    segments_cache: dict[str, Any] = {}
    queries = [
        q
        for q in ws.unanswered(current.round)
        if keys is None or (q.image_id, q.segment_id) in keys
    ]
    top = max((q.score for q in ws.queries(current.round)), default=0.0)
    for query in queries:
        if query.image_id not in segments_cache:
            segments_cache = {query.image_id: ws.read_segments(query.image_id)}
        region = query_region(ws, query, segments_cache[query.image_id])
        sample = ws.sample(query.image_id)
        tasks.append(
            {
                "data": {
                    TO_NAME: image_reference(
                        Path(sample.image_path), prefix=image_prefix, root=image_root
                    ),
                    "image_id": query.image_id,
                    "segment_id": query.segment_id,
                    "round": current.round,
                    "rank": query.rank,
                },
                "meta": {"rank": query.rank, "acquisition_score": query.score},
                "predictions": [
                    {
                        "model_version": f"a2lc-round-{current.round}",
                        "score": normalised_score(query.score, top),
                        "result": [region],
                    }
                ],
            }
        )
    return tasks


@dataclass(frozen=True)
class ParsedExport:
    """What a Label Studio export says: answers, the tasks refused with why, and how many
    painted pixels fell outside their segment (left out)."""

    answers: list[Answer]
    refused: list[Problem]
    clipped: int = 0


def _tasks(document: object, path: Path) -> list[dict[str, Any]]:
    """Tasks in the JSON layout, from either the JSON or the ``JSON_MIN`` export."""
    if not isinstance(document, list):
        raise DataError(Problem(path, "expected Label Studio's JSON export: a list of tasks"))
    tasks: list[Any] = []
    by_id: dict[object, dict[str, Any]] = {}  # JSON_MIN: one row per annotation of a task
    for task in document:
        if isinstance(task, dict) and "data" not in task and "image_id" in task:
            row = _from_json_min(task)
            key = task.get("id")
            if isinstance(key, int) and not isinstance(key, bool) and key in by_id:
                by_id[key]["annotations"].extend(row["annotations"])
                continue
            if isinstance(key, int) and not isinstance(key, bool):
                by_id[key] = row
            tasks.append(row)
        else:
            tasks.append(task)
    return tasks


def _from_json_min(task: dict[str, Any]) -> dict[str, Any]:
    """A ``JSON_MIN`` row (data fields at the top, the brush under ``label``) as a JSON task."""
    labels = task.get(FROM_NAME)
    regions = []
    for value in labels if isinstance(labels, list) else []:
        if isinstance(value, dict):
            region: dict[str, Any] = {"type": "brushlabels", "value": value}
            for key in ("original_width", "original_height"):
                if key in value:
                    region[key] = value[key]
            regions.append(region)
    annotator = task.get("annotator")
    annotation = {
        "id": task.get("annotation_id") if isinstance(task.get("annotation_id"), int) else 0,
        "updated_at": task.get("updated_at"),
        "completed_by": {"email": annotator} if isinstance(annotator, str) else annotator,
        "result": regions,
    }
    # An annotated task carries its annotation's id, regions or not (a region deleted in
    # the editor leaves the task with no `label`: the segment has no class, void).
    annotated = FROM_NAME in task or (
        isinstance(task.get("annotation_id"), int) and not isinstance(task["annotation_id"], bool)
    )
    return {"data": task, "annotations": [annotation] if annotated else []}


def task_key(task: object) -> tuple[str, int] | None:
    """An a2lc task's ``(image id, segment id)`` from its ``data``; None when they are
    missing or not a string and an integer (not an a2lc task)."""
    data = task.get("data") if isinstance(task, dict) else None
    image_id = data.get("image_id") if isinstance(data, dict) else None
    segment_id = data.get("segment_id") if isinstance(data, dict) else None
    if (
        isinstance(image_id, str)
        and isinstance(segment_id, int)
        and not isinstance(segment_id, bool)
    ):
        return image_id, segment_id
    return None


def annotator_name(annotation: dict[str, Any]) -> str:
    """Who answered: the email where the export carries it, else Label Studio's user id."""
    who = annotation.get("completed_by")
    if isinstance(who, dict) and isinstance(who.get("email"), str) and who["email"]:
        return str(who["email"])
    username = annotation.get("created_username")
    if isinstance(username, str):
        for part in username.split(","):
            if "@" in part:
                return part.strip()
    if isinstance(who, dict) and who.get("id") is not None:
        return f"label-studio-user-{who['id']}"
    if who is not None and not isinstance(who, dict | list):
        return f"label-studio-user-{who}"
    return "label-studio"


def read_export(ws: Workspace, path: Path) -> ParsedExport:
    """Parse a Label Studio export (JSON or JSON_MIN) of a2lc's tasks; see the module doc."""
    return read_export_document(ws, read_json(path), where=str(path))


def read_export_document(ws: Workspace, document: object, *, where: str) -> ParsedExport:
    """:func:`read_export` of an already decoded export; ``where`` names it in messages."""
    path = Path(where)
    tasks = _tasks(document, path)
    index = {name: i for i, name in enumerate(ws.class_names)}
    # What Label Studio showed pre-filled: the label before a recorded answer, so that
    # re-importing the same export reads a region's labels as the first import did.
    shown = {
        (str(c["image_id"]), int(c["segment_id"])): int(c["before"])
        for c in ws.corrections()
        if c["source"] == "manual"
    }
    answers: list[Answer] = []
    problems: list[Problem] = []
    refused: list[Problem] = []
    clipped = 0
    for n, task in enumerate(tasks):
        where = f"{path} task {n}"
        key = task_key(task)
        if key is None:
            problems.append(
                Problem(
                    where,
                    "data.image_id must be a string and data.segment_id an integer "
                    "(not an a2lc task?)",
                )
            )
            continue
        image_id, segment_id = key
        where = f"{where} ({image_id}/{segment_id})"
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
        except (KeyError, WorkspaceError):
            problems.append(Problem(where, f"no image {image_id!r} in this workspace"))
            continue
        bad_shape = _region_shape_problem(regions, sample.height, sample.width)
        if bad_shape is not None:
            problems.append(Problem(where, bad_shape))
            continue
        table = ws.segment_table(image_id)
        ids = table.ids.tolist()
        if segment_id not in ids:
            problems.append(Problem(where, f"image {image_id!r} has no segment {segment_id}"))
            continue
        current = int(table.label[ids.index(segment_id)])
        prefilled = shown.get((image_id, segment_id), current)
        names = list(
            dict.fromkeys(
                str(x) for r in regions for x in (r.get("value") or {}).get("brushlabels") or []
            )
        )
        unknown = [name for name in names if name != VOID_NAME and name not in index]
        if unknown:
            valid = ", ".join([*index, VOID_NAME])
            problems.append(Problem(where, f"unknown label {unknown[0]!r}; valid: {valid}"))
            continue
        segment = ws.read_segments(image_id) == segment_id
        current_name = VOID_NAME if prefilled == IGNORE_INDEX else ws.class_names[prefilled]
        drawn = [r for r in regions if (r.get("value") or {}).get("rle") is not None]
        split = len(drawn) > 1  # several brush regions: parts of the segment, each its class
        if split or _repainted(regions, segment):
            paint, outside, why = _painting(regions, segment, index, current_name)
            if paint is None:
                refused.append(Problem(where, why))
                continue
            clipped += outside
            answers.append(Answer(image_id, segment_id, None, annotator_name(latest), paint=paint))
            continue
        if len(names) > 1:
            # Label Studio keeps the pre-filled label when another one is added.
            names = [name for name in names if name != current_name] or [current_name]
        if len(names) > 1:
            refused.append(
                Problem(where, f"the region has several labels {names}: which one is meant?")
            )
            continue
        label: int | None = IGNORE_INDEX if not names or names[0] == VOID_NAME else index[names[0]]
        if label == current:
            label = None  # the current class confirmed: keep the segment's pixels as they are
        answers.append(Answer(image_id, segment_id, label, annotator_name(latest)))
    DataError.collect(problems, summary=f"{len(problems)} problem(s) in {where}: nothing recorded")
    return ParsedExport(answers, refused, clipped)


def read_answers(ws: Workspace, path: Path) -> list[Answer]:
    """The answers of a Label Studio export (tasks refused one by one are left out)."""
    return read_export(ws, path).answers


def _repainted(regions: list[dict[str, Any]], segment: np.ndarray) -> bool:
    """Whether the regions' pixels are not the segment's (the brush was repainted)."""
    painted = np.zeros(segment.shape, dtype=bool)
    drawn = False
    for region in regions:
        rle = (region.get("value") or {}).get("rle")
        if rle is None:
            continue
        drawn = True
        painted |= decode_mask(rle, height=segment.shape[0], width=segment.shape[1])
    return drawn and not np.array_equal(painted, segment)


def _painting(
    regions: list[dict[str, Any]], segment: np.ndarray, index: dict[str, int], current: str
) -> tuple[np.ndarray | None, int, str]:
    """A repainted brush as a painting of the segment: (``H×W`` int16 or None, pixels
    painted outside the segment, why None)."""
    paint = np.full(segment.shape, -1, dtype=np.int16)
    outside = 0
    for region in regions:
        value = region.get("value") or {}
        rle = value.get("rle")
        if rle is None:
            continue
        names = list(dict.fromkeys(str(x) for x in value.get("brushlabels") or []))
        if len(names) > 1:  # Label Studio keeps the pre-filled label when another is added
            names = [name for name in names if name != current] or [current]
        if len(names) != 1:
            return None, 0, f"a painted region has {len(names)} labels {names}: which one is meant?"
        mask = decode_mask(rle, height=segment.shape[0], width=segment.shape[1])
        outside += int((mask & ~segment).sum())
        paint[mask & segment] = IGNORE_INDEX if names[0] == VOID_NAME else index[names[0]]
    paint[segment & (paint == -1)] = IGNORE_INDEX  # erased from every region: no class
    return paint, outside, ""


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


def import_answers(ws: Workspace, path: Path) -> dict[str, Any]:
    """Record the new answers of a Label Studio export in one transaction; see the module doc."""
    return import_answer_document(ws, read_json(path), where=str(path))


def import_answer_document(ws: Workspace, document: object, *, where: str) -> dict[str, Any]:
    """:func:`import_answers` of an already decoded export (or Label Studio's task list)."""
    path = where
    current = ws.open_round()
    if current is None:
        raise DataError(Problem(ws.path, "no open round to take answers"))
    parsed = read_export_document(ws, document, where=where)
    open_queries = {(q.image_id, q.segment_id) for q in ws.unanswered(current.round)}
    recorded = {
        (c["image_id"], int(c["segment_id"])): int(c["after"])
        for c in ws.corrections()
        if c["source"] == "manual"
    }
    new: list[Answer] = []
    skipped = 0
    refused = list(parsed.refused)
    for answer in parsed.answers:
        key = (answer.image_id, answer.segment_id)
        if key in open_queries:
            new.append(answer)
            continue
        if key in recorded and answer.paint is not None:
            skipped += 1  # a painting already recorded (re-importing the same export)
            continue
        if key in recorded:
            table = ws.segment_table(answer.image_id)
            row = table.ids.tolist().index(answer.segment_id)
            meant = int(table.label[row]) if answer.label is None else answer.label
            if meant == recorded[key]:
                skipped += 1
                continue
            refused.append(
                Problem(
                    f"{path} ({answer.image_id}/{answer.segment_id})",
                    f"already answered as {_class_name(ws, recorded[key])}; this export says "
                    f"{_class_name(ws, meant)} (not changed)",
                )
            )
            continue
        refused.append(
            Problem(
                f"{path} ({answer.image_id}/{answer.segment_id})",
                f"not a query of the open round {current.round}",
            )
        )
    ws.record_answers(current.round, new)
    return {
        "round": current.round,
        "answers": len(new),
        "already_recorded": skipped,
        "refused": refused,
        "painted_outside_segments": parsed.clipped,
        "unanswered": ws.count_unanswered(current.round),
    }


def _class_name(ws: Workspace, label: int) -> str:
    return VOID_NAME if label == IGNORE_INDEX else repr(ws.class_names[label])
