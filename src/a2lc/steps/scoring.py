"""Score the pool over a workspace and select a round's queries.

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
from a2lc.acquisition import ACQUISITIONS, adaptive_class_weight, class_pixel_counts, select_top
from a2lc.acquisition.functions import PoolTotals
from a2lc.acquisition.statistics import segment_statistics
from a2lc.correction.lcm import segment_features
from a2lc.data.probs import load_probabilities, probability_path
from a2lc.distributed import Shard, share
from a2lc.errors import DataError, Problem, WorkspaceError
from a2lc.runtime import releasing
from a2lc.workspace import Workspace

log = logging.getLogger(__name__)

ProbabilityLoader = Callable[[str], np.ndarray]
"""``image id -> C×H×W`` float32 probabilities."""
Embedder = Callable[[str, np.ndarray, np.ndarray], np.ndarray]
"""``(image id, segments H×W, segment ids (M,)) -> (M, E)`` mask-pooled encoder features."""


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


def pool_class_weight(
    ws: Workspace, *, round_index: int, show_progress: bool = True, shard: Shard | None = None
) -> np.ndarray:
    """ABC's class weight over the pool's current labels entering ``round_index``.

    Segments corrected manually in earlier rounds and pixels labelled 255 are not counted.
    ``shard``: each rank counts its images and the integer counts are summed (exact).
    """
    manual = ws.manual_segments(before_round=round_index)
    counts = np.zeros(ws.num_classes, dtype=np.int64)
    samples = share(ws.samples, shard)
    iterable = progress(samples, desc="class weights", total=len(samples), enabled=show_progress)
    for sample in releasing(iterable):
        segments = ws.read_segments(sample.id)
        labels = ws.read_labels(sample.id, segments=segments)
        counts += class_pixel_counts(
            labels, segments, num_classes=ws.num_classes, exclude=manual.get(sample.id)
        )
    if shard is not None:
        counts = np.sum(shard.gather(counts), axis=0)
    return adaptive_class_weight(counts)


@dataclass(frozen=True)
class _ImageRecord:
    """What scoring keeps of one image (small: per segment, not per pixel)."""

    index: int
    image_id: str
    ids: np.ndarray
    part: np.ndarray
    eligible: np.ndarray
    counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    """Pooled acquisitions: eligible and all label pixels per class, probability mass."""
    feature: tuple[str, np.ndarray, np.ndarray, np.ndarray | None] | None


@dataclass(frozen=True)
class Selection:
    """Queries chosen for the next round, not yet recorded."""

    queries: list[tuple[str, int, float]]
    """(image id, segment id, score), best first."""
    config: dict[str, object]
    features: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] | None = None
    """With ``keep_features``: per image (id, segment ids ``(M,)``, mean probabilities
    ``(M, C)``, and with ``embed`` the segments' embeddings ``(M, E)``, else None)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Wall and CPU seconds of reading maps, predicting (loading probabilities) and scoring."""


def select_queries(
    ws: Workspace,
    load_probs: ProbabilityLoader,
    *,
    config: ScoreConfig,
    show_progress: bool = True,
    keep_features: bool = False,
    embed: Embedder | None = None,
    reserve: int = 0,
    load_feature_probs: ProbabilityLoader | None = None,
    shard: Shard | None = None,
    merge_on_writer_only: bool = False,
) -> Selection:
    """Score every segment of the pool and select the top-B; writes nothing.

    One pass over the pool: each image's maps are decoded once and its
    probabilities loaded once and discarded after one sweep, which gives the
    scores, the pixel counts for ABC's class weight (applied once the pass is
    complete) and, with ``keep_features``, each segment's mean probability vector
    for LCM. Memory grows with the pool's segments × classes, not its pixels.
    ``embed`` adds each segment's encoder embedding to the kept features;
    ``reserve`` returns that many more queries after the top-B (best first), for
    callers that replace some of the top-B. ``load_feature_probs``: where the
    features come from other probabilities than the scores (the reference's
    Cityscapes quirk), one more prediction per image. Bad input (a corrupt or mis-shaped
    probability map, a budget larger than the segments left) raises before
    anything is recorded. ``shard``: score only this process's images and gather
    the rest from the other ranks (:mod:`a2lc.distributed`); every rank returns the
    same selection, exactly the one a single process makes, or, with
    ``merge_on_writer_only``, rank 0 does and the others return an empty selection
    (they then hold no pool-wide scores or features).
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
    pooled = acquisition.pooled
    weight = (
        pool_class_weight(ws, round_index=round_index, show_progress=show_progress, shard=shard)
        if acquisition.needs_class_weight and not pooled
        else None
    )
    num_classes = ws.num_classes
    samples = ws.samples
    mine = share(range(len(samples)), shard)
    iterable = progress(
        mine, desc=f"scoring ({config.strategy})", total=len(mine), enabled=show_progress
    )
    watch = Stopwatch()
    records: list[_ImageRecord] = []
    for index in releasing(iterable):
        sample = samples[index]
        feature: tuple[str, np.ndarray, np.ndarray, np.ndarray | None] | None = None
        counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        with watch.part("read_maps"):
            segments = ws.read_segments(sample.id)
            labels = ws.read_labels(sample.id, segments=segments)
        with watch.part("predict"):
            probs = load_probs(sample.id)
        with watch.part("score"):
            if pooled:
                assert acquisition.image_parts is not None
                stats = segment_statistics(probs, labels, segments)
                ids = stats.ids
                part = acquisition.image_parts(stats, probs, labels, segments)
                done = manual.get(sample.id)
                counts = (
                    class_pixel_counts(labels, segments, num_classes=num_classes, exclude=done),
                    class_pixel_counts(labels, segments, num_classes=num_classes),
                    stats.features.astype(np.float64).T @ stats.sizes,
                )
                if keep_features:
                    feature = (sample.id, ids, stats.features, None)
            else:
                rng = np.random.default_rng([config.seed, round_index, index])
                result = acquisition.score(probs, labels, segments, class_weight=weight, rng=rng)
                ids = result.ids
                part = result.scores
                if keep_features and load_feature_probs is None:
                    feature = (sample.id, *segment_features(probs, segments), None)
        if keep_features and load_feature_probs is not None:
            with watch.part("predict_features"):
                # The scores' own features are not the ones LCM uses (the Cityscapes quirk).
                kept_ids, means = segment_features(load_feature_probs(sample.id), segments)
                feature = (sample.id, kept_ids, means, None)
        if keep_features and embed is not None:
            with watch.part("embed"):
                assert feature is not None
                image_id, ids_kept, means, _ = feature
                feature = (image_id, ids_kept, means, embed(sample.id, segments, ids_kept))
        eligible_mask = ~np.isin(ids, manual.get(sample.id, np.zeros(0, np.int64)))
        records.append(_ImageRecord(index, sample.id, ids, part, eligible_mask, counts, feature))
    if shard is not None:
        # Merged in pool order, as one process makes them.
        everyone = shard.to_writer(records) if merge_on_writer_only else shard.gather(records)
        if everyone is None:
            return Selection([], {}, [] if keep_features else None, timings=watch.metrics())
        records = sorted((r for got in everyone for r in got), key=lambda r: r.index)
    eligible_pixels = np.zeros(num_classes, dtype=np.int64)
    label_pixels = np.zeros(num_classes, dtype=np.int64)
    mass = np.zeros(num_classes, dtype=np.float64)
    for record in records:  # sums in pool order: the same floating-point result sharded or not
        if record.counts is not None:
            eligible_pixels += record.counts[0]
            label_pixels += record.counts[1]
            mass += record.counts[2]
    keys = [(r.image_id, r.ids) for r in records]
    parts = [r.part for r in records]
    eligible = [r.eligible for r in records]
    features = [r.feature for r in records if r.feature is not None]
    recorded: dict[str, object] = {}
    if pooled:
        assert acquisition.finish is not None
        totals = PoolTotals(eligible_pixels, label_pixels, mass)
        width = max((p.shape[1] for p in parts), default=1)
        all_parts = np.concatenate(parts) if parts else np.zeros((0, width))
        pooled_scores, recorded = acquisition.finish(all_parts, totals)
        parts = [np.asarray(pooled_scores, dtype=np.float64)]
    scores = np.concatenate(parts) if parts else np.zeros(0)
    eligible_all = np.concatenate(eligible)
    extra = max(0, min(reserve, int(eligible_all.sum()) - config.budget))
    picked = select_top(scores, budget=config.budget + extra, eligible=eligible_all)
    image_of = np.concatenate([np.full(ids.size, i) for i, (_, ids) in enumerate(keys)])
    segment_of = np.concatenate([ids for _, ids in keys])
    queries = [(keys[int(image_of[k])][0], int(segment_of[k]), float(scores[k])) for k in picked]
    config_json: dict[str, object] = {**asdict(config), **recorded}
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
    shard: Shard | None = None,
) -> int | None:
    """Select the top-B segments (:func:`select_queries`) and record them as a new round.

    Returns the new round's index; nothing is written if selection fails. With a
    ``shard`` every rank scores its images, and rank 0 alone records the round
    (other ranks return None; they may hold ``ws`` read-only).
    """
    selection = select_queries(
        ws,
        load_probs,
        config=config,
        show_progress=show_progress,
        shard=shard,
        merge_on_writer_only=True,
    )
    if shard is not None and not shard.writer:
        return None
    return ws.start_round(
        selection.queries, strategy=config.strategy, budget=config.budget, config=selection.config
    )
