"""Answer a round's queries with the simulated annotator; measure data mIoU against ground truth.

Both need ground truth (benchmarks, or a user's held-out labelled images); people's
answers come through :mod:`a2lc.workspace.annotation` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from a2lc._progress import progress
from a2lc.correction import count_transitions, merge_transitions, simulate_annotator
from a2lc.data.sample import IGNORE_INDEX
from a2lc.errors import WorkspaceError
from a2lc.metrics import ConfusionAccumulator
from a2lc.runtime import releasing
from a2lc.workspace import Answer, Workspace


def answer_with_oracle(
    ws: Workspace, round_index: int, *, show_progress: bool = True, exact: bool = False
) -> dict[int, dict[int, int]]:
    """Answer the round's open queries with the simulated annotator; return the transitions.

    ``exact``: a person who also paints every pixel the majority answer leaves wrong
    (pixel-exact answers); by default the majority rule alone, as the benchmarks use.

    The answers are committed in one transaction, so an interrupted call has
    either answered everything or nothing.
    """
    if not ws.has_ground_truth:
        raise WorkspaceError(
            "the simulated annotator (--oracle gt) needs ground truth for every image; "
            f"{len(ws.ground_truth_ids)} of {len(ws.samples)} have it (answer in the web app: "
            "--oracle human, then `a2lc serve`)"
        )
    by_image: dict[str, list[int]] = {}
    for query in ws.unanswered(round_index):
        by_image.setdefault(query.image_id, []).append(query.segment_id)
    answers: list[Answer] = []
    tables = []
    items = list(by_image.items())
    iterable = progress(items, desc="simulated annotator", total=len(items), enabled=show_progress)
    for image_id, ids in releasing(iterable):
        segments = ws.read_segments(image_id)
        labels = ws.read_labels(image_id, segments=segments)
        truth = ws.read_ground_truth(image_id)
        result = simulate_annotator(labels, segments, truth, ids)
        for segment_id, relabel, after in zip(
            result.segment_ids, result.relabel, result.after, strict=True
        ):
            paint = None
            if exact:  # paint every pixel the majority answer leaves wrong
                segment = segments == int(segment_id)
                wrong = segment & (truth != IGNORE_INDEX) & (result.labels != truth)
                if wrong.any():
                    paint = np.where(wrong, truth.astype(np.int16), np.int16(-1))
            answers.append(
                Answer(
                    image_id,
                    int(segment_id),
                    int(after) if relabel else None,
                    "oracle",
                    paint=paint,
                )
            )
        tables.append(count_transitions(result.before.tolist(), result.after.tolist()))
    ws.record_answers(round_index, answers)
    return merge_transitions(tables)


def data_miou(
    ws: Workspace, *, show_progress: bool = True, images: Sequence[str] | None = None
) -> ConfusionAccumulator:
    """Label quality of the pool now: current labels vs ground truth (255 on either side skipped).

    Computed on ``images``, by default :attr:`Workspace.measured_ids` (ground truth,
    neither labelled by a person nor trained on by the seed model).
    """
    ids = list(ws.measured_ids if images is None else images)
    if not ids:
        if ws.ground_truth_ids:
            raise WorkspaceError(
                "data mIoU needs ground truth on images that neither a person labelled nor "
                f"the seed model trained on; the {len(ws.ground_truth_ids)} pool images with "
                "ground truth are all of those (see the estimated label accuracy instead)"
            )
        raise WorkspaceError("data mIoU needs ground truth and no pool image has it")
    acc = ConfusionAccumulator(ws.num_classes)
    for image_id in releasing(
        progress(ids, desc="data mIoU", total=len(ids), enabled=show_progress)
    ):
        acc.update(ws.read_ground_truth(image_id), ws.read_labels(image_id))
    return acc
