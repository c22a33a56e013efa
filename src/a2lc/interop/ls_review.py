"""Label Studio: automatic changes as review tasks, and the verdicts back (issue #36).

Export writes ``tasks.json`` (one task per automatic change still in force and not
reviewed, in the review queue's uniformly random order: the image, the changed
segment as a brush region labelled with its *new* class as the prediction, the
corrector's confidence as its score, and in ``data`` the change id, its round,
corrector, old and new class and guarantee) and ``labeling_config.xml`` (the same
``BrushLabels`` control as query tasks). A reviewer submits the region as it is to
accept the change, or relabels it: the old class (or any other, or ``void``) reverts
it and becomes the person's answer.

With a running Label Studio, :func:`push_review_tasks` adds the tasks to a project
through its API (only the changes the project does not hold yet) and
:func:`pull_reviews` reads the project's review tasks back. Import reads Label
Studio's JSON or ``JSON_MIN`` export (or the project's tasks): per task, the latest
annotation's label gives the verdict, recorded with
:meth:`a2lc.workspace.review.ReviewDesk.record_verdicts` (one transaction; a task
already recorded with the same verdict is skipped, so re-importing a full export is
harmless). A file that is not an export of a2lc's review tasks, an unknown label or
a change that is no longer in force refuses the whole file (nothing recorded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from a2lc._atomic import atomic_write_text
from a2lc._json import read_json
from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import DataError, Problem
from a2lc.interop.label_studio import (
    LOCAL_FILES_PREFIX,
    TO_NAME,
    VOID_NAME,
    _tasks,
    annotator_name,
    brush_region,
    image_reference,
    labeling_config,
)
from a2lc.interop.ls_api import LabelStudioAPI
from a2lc.workspace import Workspace
from a2lc.workspace.annotation import LeaseError
from a2lc.workspace.review import ReviewDesk

REVIEW_KIND = "a2lc-review"
"""``data.kind`` of a review task (query tasks have none)."""

Verdict = tuple[int, str, int | None, str]
"""``(change id, verdict, label, annotator)`` read from a reviewed task."""


def _name(ws: Workspace, label: int) -> str:
    return VOID_NAME if label == IGNORE_INDEX else ws.class_names[label]


def review_tasks(
    ws: Workspace,
    *,
    image_prefix: str = LOCAL_FILES_PREFIX,
    image_root: Path | None = None,
    round_index: int | None = None,
) -> list[dict[str, Any]]:
    """Label Studio tasks of the changes in the review queue (``round_index``: of that round)."""
    desk = ReviewDesk(ws)
    changes = {c.id: c for c in ws.automatic_changes(round_index=round_index)}
    tasks = []
    segments: dict[str, np.ndarray] = {}
    for change_id in desk.queue():
        change = changes.get(change_id)
        if change is None:
            continue
        if change.image_id not in segments:
            segments = {change.image_id: ws.read_segments(change.image_id)}
        sample = ws.sample(change.image_id)
        region = brush_region(
            region_id=f"change_{change.id}",
            mask=segments[change.image_id] == change.segment_id,
            label_name=_name(ws, change.after),
            width=sample.width,
            height=sample.height,
        )
        confidence = 0.0 if change.confidence is None else min(1.0, max(0.0, change.confidence))
        tasks.append(
            {
                "data": {
                    TO_NAME: image_reference(
                        Path(sample.image_path), prefix=image_prefix, root=image_root
                    ),
                    "kind": REVIEW_KIND,
                    "change_id": change.id,
                    "image_id": change.image_id,
                    "segment_id": change.segment_id,
                    "round": change.round,
                    "corrector": change.corrector,
                    "before": _name(ws, change.before),
                    "after": _name(ws, change.after),
                    "guarantee": str(
                        change.evidence.get("statement")
                        or change.evidence.get("recorded")
                        or "no guarantee recorded"
                    ),
                },
                "predictions": [
                    {
                        "model_version": f"a2lc-{change.corrector}-round-{change.round}",
                        "score": confidence,
                        "result": [region],
                    }
                ],
            }
        )
    return tasks


def export_review_tasks(
    ws: Workspace,
    out: Path,
    *,
    image_prefix: str = LOCAL_FILES_PREFIX,
    image_root: Path | None = None,
    round_index: int | None = None,
) -> dict[str, Any]:
    """Write ``out/tasks.json`` and ``out/labeling_config.xml`` for the review queue."""
    tasks = review_tasks(
        ws, image_prefix=image_prefix, image_root=image_root, round_index=round_index
    )
    if not tasks:
        raise DataError(Problem(ws.path, "no automatic change to review"))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "tasks.json", json.dumps(tasks))
    atomic_write_text(
        out / "labeling_config.xml", labeling_config(list(ws.class_names), ws.palette)
    )
    return {"tasks": len(tasks)}


def _brush_labels(region: object) -> list[str]:
    """The labels of a brush region of an export (anything malformed: none)."""
    if not isinstance(region, dict) or region.get("type") != "brushlabels":
        return []
    value = region.get("value")
    labels = value.get("brushlabels") if isinstance(value, dict) else None
    return [str(x) for x in labels] if isinstance(labels, list) else []


def read_verdicts(ws: Workspace, document: object, *, where: str) -> list[Verdict]:
    """``(change id, verdict, label, annotator)`` of every reviewed task of an export."""
    index = {name: i for i, name in enumerate(ws.class_names)} | {VOID_NAME: IGNORE_INDEX}
    changes = {c.id: c for c in ws.automatic_changes(include_reverted=True)}
    problems: list[Problem] = []
    verdicts: list[Verdict] = []
    for n, task in enumerate(_tasks(document, Path(where))):
        data = task.get("data") if isinstance(task, dict) else None
        change_id = data.get("change_id") if isinstance(data, dict) else None
        place = f"{where} task {n}"
        if (
            not isinstance(data, dict)
            or data.get("kind") != REVIEW_KIND
            or not isinstance(change_id, int)
            or isinstance(change_id, bool)
        ):
            problems.append(Problem(place, "not an a2lc review task (data.kind, data.change_id)"))
            continue
        change = changes.get(change_id)
        if change is None:
            problems.append(Problem(place, f"no automatic change {change_id} in this workspace"))
            continue
        annotations = task.get("annotations") if isinstance(task, dict) else None
        done = [
            a
            for a in (annotations if isinstance(annotations, list) else [])
            if isinstance(a, dict) and not a.get("was_cancelled")
        ]
        if not done:
            continue  # not reviewed yet
        latest = max(
            done,
            key=lambda a: (
                str(a.get("updated_at") or ""),
                a["id"] if isinstance(a.get("id"), int) and not isinstance(a["id"], bool) else 0,
            ),
        )
        given = latest.get("result")
        result: list[Any] = given if isinstance(given, list) else []
        names = list(dict.fromkeys(name for r in result for name in _brush_labels(r)))
        if len(names) > 1:  # Label Studio keeps the pre-filled label when another is added
            names = [x for x in names if x != _name(ws, change.after)] or names[:1]
        unknown = [x for x in names if x not in index]
        if unknown or len(names) > 1:
            why = f"unknown label {unknown[0]!r}" if unknown else f"several labels {names}"
            problems.append(Problem(place, why))
            continue
        label = index[names[0]] if names else IGNORE_INDEX  # a deleted region: void
        who = annotator_name(latest)
        if label == change.after:
            verdicts.append((change_id, "accept", None, who))
        else:
            verdicts.append((change_id, "revert", None if label == change.before else label, who))
    DataError.collect(problems, summary=f"{len(problems)} problem(s) in {where}: nothing recorded")
    return verdicts


def import_reviews(ws: Workspace, path: Path) -> dict[str, Any]:
    """Record the verdicts of a Label Studio export of review tasks (one transaction)."""
    return _record(ws, read_verdicts(ws, read_json(path), where=str(path)), where=path)


def _record(ws: Workspace, verdicts: list[Verdict], *, where: Path | str) -> dict[str, Any]:
    """Record ``verdicts`` read from ``where`` (one transaction) and count them."""
    try:
        summary = ReviewDesk(ws).record_verdicts(verdicts)
    except LeaseError as exc:
        raise DataError(Problem(where, f"{exc}: nothing recorded")) from None
    return {
        **summary,
        "accepted": sum(v == "accept" for _, v, _, _ in verdicts),
        "reverted": sum(v == "revert" for _, v, _, _ in verdicts),
    }


def _review_tasks_of(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The project's a2lc review tasks (a project may hold query tasks too)."""
    return [
        t for t in tasks if isinstance(t.get("data"), dict) and t["data"].get("kind") == REVIEW_KIND
    ]


def push_review_tasks(
    ws: Workspace,
    api: LabelStudioAPI,
    project: int,
    *,
    image_prefix: str = LOCAL_FILES_PREFIX,
    image_root: Path | None = None,
    round_index: int | None = None,
) -> dict[str, int]:
    """Add the review queue's changes the project does not have yet as tasks."""
    there = {t["data"].get("change_id") for t in _review_tasks_of(api.tasks(project))}
    tasks = [
        t
        for t in review_tasks(
            ws, image_prefix=image_prefix, image_root=image_root, round_index=round_index
        )
        if t["data"]["change_id"] not in there
    ]
    return {"added": api.import_tasks(project, tasks), "already_there": len(there)}


def pull_reviews(ws: Workspace, api: LabelStudioAPI, project: int) -> dict[str, Any]:
    """Record the verdicts of the project's review tasks (one transaction)."""
    where = f"Label Studio project {project}"
    return _record(
        ws, read_verdicts(ws, _review_tasks_of(api.tasks(project)), where=where), where=where
    )
