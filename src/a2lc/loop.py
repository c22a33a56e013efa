"""Orchestration over a workspace: score the pool, select queries, answer them.

State lives in the :class:`~a2lc.workspace.Workspace`; scoring is the pure
functions of :mod:`a2lc.acquisition`; this module only moves arrays between
them, one image at a time, so memory does not grow with the pool's pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from a2lc._progress import progress
from a2lc._timing import Stopwatch
from a2lc.acquisition import (
    ACQUISITIONS,
    adaptive_class_weight,
    class_pixel_counts,
    select_top,
)
from a2lc.acquisition.statistics import segment_statistics
from a2lc.correction import count_transitions, merge_transitions, simulate_annotator
from a2lc.correction.lcm import segment_features
from a2lc.data.probs import load_probabilities, probability_path
from a2lc.errors import DataError, Problem, WorkspaceError
from a2lc.metrics import ConfusionAccumulator
from a2lc.workspace import Answer, Workspace

log = logging.getLogger(__name__)

ProbabilityLoader = Callable[[str], np.ndarray]
"""``image id -> C×H×W`` float32 probabilities."""


@dataclass(frozen=True)
class ScoreConfig:
    """Options of one acquisition step, saved with the round."""

    strategy: str = "abc"
    budget: int = 100
    seed: int = 0


def probability_folder_loader(ws: Workspace, folder: Path) -> ProbabilityLoader:
    """Loader for saved maps in ``folder``; checks that every image has one first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(Problem(folder, "probability folder does not exist"))
    problems: list[Problem] = []
    paths: dict[str, Path] = {}
    for sample in ws.samples:
        try:
            paths[sample.id] = probability_path(folder, sample.id)
        except DataError as exc:
            problems.extend(exc.problems)
    DataError.collect(problems, summary=f"{len(problems)} probability map(s) missing in {folder}")

    def load(image_id: str) -> np.ndarray:
        return load_probabilities(
            paths[image_id], num_classes=ws.num_classes, shape=ws.sample(image_id).shape
        )

    return load


def pool_class_weight(ws: Workspace, *, round_index: int, show_progress: bool = True) -> np.ndarray:
    """ABC's class weight over the pool's current labels entering ``round_index``.

    Segments corrected manually in earlier rounds and pixels labelled 255 are not counted.
    """
    manual = ws.manual_segments(before_round=round_index)
    counts = np.zeros(ws.num_classes, dtype=np.int64)
    samples = ws.samples
    iterable = progress(samples, desc="class weights", total=len(samples), enabled=show_progress)
    for sample in iterable:
        segments = ws.read_segments(sample.id)
        labels = ws.read_labels(sample.id, segments=segments)
        counts += class_pixel_counts(
            labels, segments, num_classes=ws.num_classes, exclude=manual.get(sample.id)
        )
    return adaptive_class_weight(counts)


@dataclass(frozen=True)
class Selection:
    """Queries chosen for the next round, not yet recorded."""

    queries: list[tuple[str, int, float]]
    """(image id, segment id, score), best first."""
    config: dict[str, object]
    features: list[tuple[str, np.ndarray, np.ndarray]] | None = None
    """With ``keep_features``: per image (id, segment ids ``(M,)``, mean probabilities ``(M, C)``)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Wall and CPU seconds of reading maps, predicting (loading probabilities) and scoring."""


def select_queries(
    ws: Workspace,
    load_probs: ProbabilityLoader,
    *,
    config: ScoreConfig,
    show_progress: bool = True,
    keep_features: bool = False,
) -> Selection:
    """Score every segment of the pool and select the top-B; writes nothing.

    One pass over the pool: each image's maps are decoded once and its
    probabilities loaded once and discarded after one sweep, which gives the
    scores, the pixel counts for ABC's class weight (applied once the pass is
    complete) and, with ``keep_features``, each segment's mean probability vector
    for LCM. Memory grows with the pool's segments × classes, not its pixels.
    Bad input (a corrupt or mis-shaped probability map, a budget larger than the
    segments left) raises before anything is recorded.
    """
    ws.require_segments()
    acquisition = ACQUISITIONS.get(config.strategy)
    if config.budget <= 0:
        raise WorkspaceError(f"budget must be positive, got {config.budget}")
    ws.require_no_open_round()
    round_index = ws.next_round()
    manual = ws.manual_segments(before_round=round_index)
    eligible_total = ws.num_segments() - sum(len(v) for v in manual.values())
    if config.budget > eligible_total:
        raise WorkspaceError(
            f"budget {config.budget} is larger than the {eligible_total} segments that can still be queried"
        )
    fused = acquisition.from_label_scores is not None
    weight = (
        pool_class_weight(ws, round_index=round_index, show_progress=show_progress)
        if acquisition.needs_class_weight and not fused
        else None
    )
    counts = np.zeros(ws.num_classes, dtype=np.int64)
    keys: list[tuple[str, np.ndarray]] = []
    parts: list[np.ndarray] = []  # per image: scores (M,), or label scores (M, C) awaiting w
    eligible: list[np.ndarray] = []
    features: list[tuple[str, np.ndarray, np.ndarray]] = []
    samples = ws.samples
    iterable = progress(
        samples, desc=f"scoring ({config.strategy})", total=len(samples), enabled=show_progress
    )
    watch = Stopwatch()
    for index, sample in enumerate(iterable):
        with watch.part("read_maps"):
            segments = ws.read_segments(sample.id)
            labels = ws.read_labels(sample.id, segments=segments)
        with watch.part("predict"):
            probs = load_probs(sample.id)
        with watch.part("score"):
            if fused:
                stats = segment_statistics(probs, labels, segments)
                ids = stats.ids
                if acquisition.needs_class_weight:
                    counts += class_pixel_counts(
                        labels, segments, num_classes=ws.num_classes, exclude=manual.get(sample.id)
                    )
                    parts.append(stats.label_scores)
                else:
                    parts.append(acquisition.scores_from(stats.label_scores))
                if keep_features:
                    features.append((sample.id, ids, stats.features))
            else:
                rng = np.random.default_rng([config.seed, round_index, index])
                result = acquisition.score(probs, labels, segments, class_weight=weight, rng=rng)
                ids = result.ids
                parts.append(result.scores)
                if keep_features:
                    features.append((sample.id, *segment_features(probs, segments)))
        keys.append((sample.id, ids))
        eligible.append(~np.isin(ids, manual.get(sample.id, np.zeros(0, np.int64))))
    if fused and acquisition.needs_class_weight:
        weight = adaptive_class_weight(counts)
        parts = [acquisition.scores_from(part, class_weight=weight) for part in parts]
    scores = np.concatenate(parts) if parts else np.zeros(0)
    picked = select_top(scores, budget=config.budget, eligible=np.concatenate(eligible))
    image_of = np.concatenate([np.full(ids.size, i) for i, (_, ids) in enumerate(keys)])
    segment_of = np.concatenate([ids for _, ids in keys])
    queries = [(keys[int(image_of[k])][0], int(segment_of[k]), float(scores[k])) for k in picked]
    config_json: dict[str, object] = dict(asdict(config))
    if weight is not None:
        config_json["class_weight"] = [float(w) for w in weight]
    return Selection(
        queries, config_json, features if keep_features else None, timings=watch.metrics()
    )


def score_round(
    ws: Workspace,
    load_probs: ProbabilityLoader,
    *,
    config: ScoreConfig,
    show_progress: bool = True,
) -> int:
    """Select the top-B segments (:func:`select_queries`) and record them as a new round.

    Returns the new round's index; nothing is written if selection fails.
    """
    selection = select_queries(ws, load_probs, config=config, show_progress=show_progress)
    return ws.start_round(
        selection.queries, strategy=config.strategy, budget=config.budget, config=selection.config
    )


def answer_with_oracle(
    ws: Workspace, round_index: int, *, show_progress: bool = True
) -> dict[int, dict[int, int]]:
    """Answer the round's open queries with the simulated annotator; return the transitions.

    The answers are committed in one transaction, so an interrupted call has
    either answered everything or nothing.
    """
    if not ws.has_ground_truth:
        raise WorkspaceError(
            "the simulated annotator (--oracle gt) needs ground truth for every image"
        )
    by_image: dict[str, list[int]] = {}
    for query in ws.unanswered(round_index):
        by_image.setdefault(query.image_id, []).append(query.segment_id)
    answers: list[Answer] = []
    tables = []
    items = list(by_image.items())
    iterable = progress(items, desc="simulated annotator", total=len(items), enabled=show_progress)
    for image_id, ids in iterable:
        segments = ws.read_segments(image_id)
        labels = ws.read_labels(image_id, segments=segments)
        result = simulate_annotator(labels, segments, ws.read_ground_truth(image_id), ids)
        for segment_id, relabel, after in zip(
            result.segment_ids, result.relabel, result.after, strict=True
        ):
            answers.append(
                Answer(image_id, int(segment_id), int(after) if relabel else None, "oracle")
            )
        tables.append(count_transitions(result.before.tolist(), result.after.tolist()))
    ws.record_answers(round_index, answers)
    return merge_transitions(tables)


def data_miou(ws: Workspace, *, show_progress: bool = True) -> ConfusionAccumulator:
    """Label quality of the pool now: current labels vs ground truth (255 on either side skipped)."""
    if not ws.has_ground_truth:
        raise WorkspaceError("data mIoU needs ground truth for every image")
    acc = ConfusionAccumulator(ws.num_classes)
    samples = ws.samples
    iterable = progress(samples, desc="data mIoU", total=len(samples), enabled=show_progress)
    for sample in iterable:
        acc.update(ws.read_ground_truth(sample.id), ws.read_labels(sample.id))
    return acc
