"""Initial pseudo-labels for a workspace: segments, labelled by a weak seed model.

The seed model is the default segmentation model trained on a handful of
ground-truth images (``seed_images``). Three noise regimes:

* ``seed``: each segment gets its majority seed-model prediction; segments the
  seed model is unsure about are left uncovered, as a detector's misses are.
* ``detector-like`` (gt-proxy only): each segment keeps its ground-truth
  majority class or, at a per-class rate solved to hit a target initial IoU,
  takes a class confusable with it (drawn from the seed model's confusion on
  its seed images); see :mod:`a2lc.pseudo_labels.noise`.
* ``correlated`` (gt-proxy only): the same solved rates, but segments that the
  seed model finds similar to another class are flipped first, to that class, so
  look-alike segments share the same error (appearance-correlated, systematic
  noise as foundation models make it).

Deterministic under ``seed``.

Under torchrun (a :class:`~a2lc.distributed.Shard`) the seed model trains
data-parallel and the pool is labelled by image across the ranks: the other
ranks stage their images' maps as files in the workspace, and rank 0 commits all
of them in one transaction. The flip regimes solve their rates over the whole
pool and run on rank 0.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from a2lc._atomic import atomic_write_arrays
from a2lc._progress import progress
from a2lc.correction.lcm import segment_features
from a2lc.data.sample import IGNORE_INDEX
from a2lc.data.segments import label_histograms
from a2lc.distributed import Shard, from_writer, is_writer, share, synchronise
from a2lc.errors import WorkspaceError
from a2lc.metrics import ConfusionAccumulator, iou_per_class
from a2lc.models.config import ModelConfig
from a2lc.models.runner import ModelRunner
from a2lc.models.segmenter import Segmenter
from a2lc.models.training import TrainConfig
from a2lc.pseudo_labels.grounded_sam import GroundedSamConfig
from a2lc.pseudo_labels.noise import (
    confusion_rows,
    default_target,
    draw_correlated_labels,
    draw_labels,
    flipped_share,
    lookalike_rows,
    realised_confusion,
    solve_flip_rates,
    target_vector,
    validate_target,
)
from a2lc.pseudo_labels.segments import (
    GtProxyConfig,
    gt_proxy_segments,
    label_segments_by_prediction,
    refine_uncertain,
    split_by_prediction,
    superpixel_segments,
)
from a2lc.workspace import Workspace

log = logging.getLogger(__name__)

NOISE_STREAM = 0xF11B
"""Second seed word of the detector-like flips' random stream (independent of the segments')."""

SegmentSource = Literal["gt-proxy", "superpixels"]
NoiseRegime = Literal["seed", "detector-like", "correlated"]
NOISE_REGIMES: tuple[NoiseRegime, ...] = ("seed", "detector-like", "correlated")
SeedImages = int | tuple[str, ...] | None
FLIP_REGIMES: tuple[NoiseRegime, ...] = ("detector-like", "correlated")
"""Regimes that flip ground-truth classes of gt-proxy segments at solved rates."""


@dataclass(frozen=True)
class PseudoLabelConfig:
    """How the initial segments and labels are made (recorded in the workspace)."""

    source: SegmentSource = "gt-proxy"
    noise: NoiseRegime = "seed"
    noise_target: dict[str, float] | None = None
    """detector-like, correlated: class name → target initial IoU (%); None = the built-in one."""
    seed_images: SeedImages = None
    """A count (drawn by ``seed`` among the images with ground truth), image ids, or
    None: every pool image that has ground truth."""
    seed: int = 0
    min_confidence: float = 0.5
    """Segments whose mean seed-model confidence is below this stay uncovered."""
    seed_epochs: int = 40
    superpixels: int = 150
    """superpixels: SLIC superpixels per image (before the adaptive cut)."""
    compactness: float = 10.0
    """superpixels: SLIC's compactness (lower follows colour edges more closely)."""
    adaptive: bool = True
    """superpixels: cut each superpixel where the seed model's predicted class changes
    (parts under ``adaptive_min_area`` pixels stay whole), so that a segment holds one class."""
    adaptive_min_area: int = 64
    refine_below: float = 0.8
    """superpixels: segments whose mean seed-model confidence is below this are cut again
    by SLIC into parts ``refine_factor`` times smaller than a superpixel (0: off). With
    the adaptive cut, it brings the pixel-accuracy ceiling on CamVid train to 95.0% at
    1.95× the plain superpixels' count (``benchmarks/segment_purity.py``)."""
    refine_factor: float = 3.5
    gt_proxy: GtProxyConfig = field(default_factory=GtProxyConfig)


def parse_seed_images(text: str) -> SeedImages:
    """``--seed-images`` as given: ``"5"`` → 5, ``"a,b"`` → ``("a", "b")``, ``""`` → None."""
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    ids = tuple(part.strip() for part in text.replace("\n", ",").split(",") if part.strip())
    return ids or None


def choose_seed_images(ws: Workspace, config: PseudoLabelConfig) -> list[str]:
    """The seed model's images (pool order): see :attr:`PseudoLabelConfig.seed_images`.

    Every one must be in the pool and have ground truth; all problems are reported at once.
    """
    samples = ws.samples
    with_truth = [s.id for s in samples if s.gt_path is not None]
    hint = (
        "put label files for the images you labelled by hand in the dataset's label folder, "
        "or name them with --seed-images ID,ID or @FILE"
    )
    if not with_truth:
        raise WorkspaceError(
            f"the seed model needs ground truth for its seed images and no pool image has it; {hint}"
        )
    chosen = config.seed_images
    if chosen is None:
        return with_truth
    if isinstance(chosen, int):
        if not 0 < chosen <= len(with_truth):
            raise WorkspaceError(
                f"--seed-images must be 1..{len(with_truth)} (the pool images with ground "
                f"truth), got {chosen}"
            )
        rng = np.random.default_rng([config.seed, 0x5EED])
        if len(with_truth) == len(samples):
            # Every image has ground truth: the draw the benchmarks were made with.
            picked = rng.choice(len(samples), size=chosen, replace=False)
            return [samples[i].id for i in sorted(picked.tolist())]
        picked = rng.choice(len(with_truth), size=chosen, replace=False)
        return [with_truth[i] for i in sorted(picked.tolist())]
    order = {s.id: i for i, s in enumerate(samples)}
    truth = set(with_truth)
    unknown = [i for i in chosen if i not in order]
    without = [i for i in chosen if i in order and i not in truth]
    repeated = sorted({i for i in chosen if chosen.count(i) > 1})
    problems = []
    if unknown:
        problems.append(f"not in the pool: {_id_list(unknown)}")
    if without:
        problems.append(f"no ground truth for: {_id_list(without)}")
    if repeated:
        problems.append(f"named twice: {_id_list(repeated)}")
    if problems:
        raise WorkspaceError("--seed-images: " + "; ".join(problems))
    return sorted(chosen, key=order.__getitem__)


def _id_list(ids: list[str], *, limit: int = 10) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def make_pseudo_labels(
    ws: Workspace,
    *,
    config: PseudoLabelConfig,
    cache_dir: Path | None = None,
    model_config: ModelConfig | None = None,
    show_progress: bool = True,
    shard: Shard | None = None,
) -> dict[str, object]:
    """Write initial segments and labels into ``ws``; return a summary.

    The seed model is ``model_config`` (default: the default model) trained for
    ``config.seed_epochs`` on the seed images; encoder features are cached in
    ``cache_dir`` (default: the workspace's cache). ``shard``: one rank of a
    torch.distributed run (see the module docstring); every rank returns the summary.
    """
    writer = is_writer(shard)
    show_progress = show_progress and writer
    if config.source == "gt-proxy" and not ws.has_ground_truth:
        raise WorkspaceError(
            "gt-proxy segments are derived from ground truth, for benchmarks only; "
            f"{ws.dataset.ground_truth_count} of {len(ws.samples)} pool images have it "
            "(use --source superpixels)"
        )
    if config.superpixels < 1 or config.adaptive_min_area < 1 or config.compactness <= 0:
        raise WorkspaceError(
            "superpixels and adaptive_min_area must be at least 1 and compactness positive, "
            f"got {config.superpixels}, {config.adaptive_min_area}, {config.compactness}"
        )
    if not 0.0 <= config.refine_below < 1.0 or not config.refine_factor >= 1:
        raise WorkspaceError(
            "refine_below must be in [0, 1) and refine_factor at least 1, got "
            f"{config.refine_below}, {config.refine_factor}"
        )
    if config.noise not in NOISE_REGIMES:
        raise WorkspaceError(
            f"unknown noise regime {config.noise!r}; valid: {', '.join(NOISE_REGIMES)}"
        )
    if config.noise in FLIP_REGIMES and config.source != "gt-proxy":
        raise WorkspaceError(
            f"--noise {config.noise} needs --source gt-proxy (it flips ground-truth classes)"
        )
    if config.noise in FLIP_REGIMES:
        target = (
            validate_target(config.noise_target, ws.class_names, source="noise target")
            if config.noise_target is not None
            else default_target(ws.class_names)
        )
    seed_ids = choose_seed_images(ws, config)
    log.info("training the seed model on %d ground-truth images", len(seed_ids))
    seed_runner = ModelRunner(
        model_config=model_config or ModelConfig(num_classes=ws.num_classes),
        train_config=TrainConfig(epochs=config.seed_epochs, seed=config.seed),
        samples={s.id: s for s in ws.samples},
        cache_dir=cache_dir if cache_dir is not None else ws.path / "cache",
        show_progress=show_progress,
    )
    model, _ = seed_runner.fit(seed_ids, ws.read_ground_truth, seed=config.seed, shard=shard)
    if config.noise in FLIP_REGIMES:
        if not writer:
            return _from_writer(shard, None)
        return _from_writer(
            shard,
            _flipped(
                ws,
                config=config,
                target=target,
                runner=seed_runner,
                model=model,
                seed_ids=seed_ids,
                show_progress=show_progress,
            ),
        )
    counts = {"segments": 0, "uncovered_segments": 0}

    def label(index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Image ``index``'s kept segments, their labels and how many were dropped."""
        sample = ws.samples[index]
        probs = seed_runner.predict(model, sample.id)
        if config.source == "gt-proxy":
            segments = _gt_proxy(config, index, ws.read_ground_truth(sample.id))
        else:
            segments = superpixel_segments(
                seed_runner.load_image(sample.id),
                num_segments=config.superpixels,
                compactness=config.compactness,
            )
            if config.adaptive:
                segments = split_by_prediction(
                    segments, probs.argmax(axis=0), min_area=config.adaptive_min_area
                )
            if config.refine_below > 0:
                height, width = segments.shape
                segments = refine_uncertain(
                    segments,
                    seed_runner.load_image(sample.id),
                    probs.max(axis=0),
                    below=config.refine_below,
                    pixels_per_part=max(
                        1, round(height * width / (config.superpixels * config.refine_factor))
                    ),
                    compactness=config.compactness,
                )
        kept, labels = label_segments_by_prediction(
            probs, segments, min_confidence=config.min_confidence
        )
        return kept, labels, int(segments.max()) - int(kept.max())

    staging = ws.path / PSEUDO_LABEL_STAGING
    if shard is not None:
        # The other ranks label their images first and stage them for rank 0.
        if writer:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        synchronise(shard)
        if not writer:
            for index in share(range(len(ws.samples)), shard):
                _stage(staging, ws.samples[index].id, *label(index))
        synchronise(shard)

    def maps() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for index, sample in enumerate(
            progress(ws.samples, desc="pseudo-labels", total=len(ws.samples), enabled=show_progress)
        ):
            if shard is None or shard.owns(index):
                kept, labels, dropped = label(index)
            else:
                kept, labels, dropped = _staged(staging, sample.id)
            counts["segments"] += int(kept.max())
            counts["uncovered_segments"] += dropped
            yield sample.id, kept, labels

    summary: dict[str, object] | None = None
    if writer:
        parameters = {**asdict(config), "seed_image_ids": seed_ids}
        ws.set_initial_maps(maps(), source=config.source, parameters=parameters)
        if shard is not None:
            _remove_staging(staging)
        summary = {**counts, "seed_images": seed_ids}
    return _from_writer(shard, summary)


PSEUDO_LABEL_STAGING = "staging/pseudo-labels"
"""Where the other ranks of a distributed ``pseudo-label`` leave their images' maps."""


def _stage(
    folder: Path, image_id: str, segments: np.ndarray, labels: np.ndarray, dropped: int
) -> None:
    atomic_write_arrays(
        folder / f"{image_id}.npz", segments=segments, labels=labels, dropped=np.int64(dropped)
    )


def _staged(folder: Path, image_id: str) -> tuple[np.ndarray, np.ndarray, int]:
    path = folder / f"{image_id}.npz"
    try:
        with np.load(path, allow_pickle=False) as staged:
            return staged["segments"], staged["labels"], int(staged["dropped"])
    except (OSError, ValueError, KeyError) as exc:
        raise WorkspaceError(
            f"{path}: another rank's staged pseudo-labels are missing or damaged ({exc}); "
            "run the command again"
        ) from None


def _remove_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):  # the parent stays if something else is staged there
        staging.parent.rmdir()


def _from_writer(shard: Shard | None, value: dict[str, object] | None) -> dict[str, object]:
    """Rank 0's summary on every rank."""
    got: dict[str, object] = from_writer(shard, value)
    return got


def _gt_proxy(config: PseudoLabelConfig, index: int, ground_truth: np.ndarray) -> np.ndarray:
    """gt-proxy segments of the pool's image ``index`` (its own random stream under ``seed``)."""
    rng = np.random.default_rng([config.seed, index])
    return gt_proxy_segments(ground_truth, rng=rng, config=config.gt_proxy)


def _flipped(
    ws: Workspace,
    *,
    config: PseudoLabelConfig,
    target: dict[str, float],
    runner: ModelRunner,
    model: Segmenter,
    seed_ids: list[str],
    show_progress: bool,
) -> dict[str, object]:
    """gt-proxy segments with ground-truth majority classes flipped at solved rates.

    detector-like: flipped segments are drawn at random and take a class from the
    seed model's confusion rows; correlated: segments that look like another class
    (the seed model's mean probability over the segment) are flipped first and take
    that class.
    """
    num_classes = ws.num_classes
    names = ws.class_names
    correlated = config.noise == "correlated"
    seed_confusion = ConfusionAccumulator(num_classes)
    for image_id in seed_ids:
        prediction = runner.predict(model, image_id).argmax(axis=0).astype(np.uint8)
        seed_confusion.update(ws.read_ground_truth(image_id), prediction)

    # Pass 1: the pool's segments as ground-truth histograms (segments are recomputed in
    # pass 2 from the same per-image seed rather than held in memory), and for the
    # correlated regime the seed model's mean probabilities over each segment.
    histograms: list[np.ndarray] = []
    looks: list[np.ndarray] = []
    for index, sample in enumerate(
        progress(ws.samples, desc="segments", total=len(ws.samples), enabled=show_progress)
    ):
        ground_truth = ws.read_ground_truth(sample.id)
        segments = _gt_proxy(config, index, ground_truth)
        ids = np.arange(1, int(segments.max()) + 1)
        hist = label_histograms(ground_truth, segments, ids)[:, :num_classes]
        histograms.append(hist)
        if correlated:
            present, features = segment_features(runner.predict(model, sample.id), segments)
            look = np.zeros((ids.size, num_classes), dtype=np.float64)
            look[present - 1] = features
            looks.append(look)
    pool = np.concatenate(histograms) if histograms else np.zeros((0, num_classes), np.int64)
    majority = np.where(pool.sum(axis=1) > 0, pool.argmax(axis=1), -1)
    sizes = pool.sum(axis=1)
    lookalike = np.concatenate(looks) if looks else np.zeros((0, num_classes))
    rows = (
        lookalike_rows(majority, lookalike, sizes=sizes, num_classes=num_classes)
        if correlated
        else confusion_rows(seed_confusion.matrix)
    )

    solved = solve_flip_rates(pool, majority, rows, target_vector(target, names))
    for c in solved.capped:
        log.warning(
            "target IoU %.1f for %s is above what the segments allow; capped at %.1f",
            target[names[c]],
            names[c],
            100 * solved.target[c],
        )
    for c in solved.unreachable:
        log.warning(
            "target IoU %.1f for %s is not reachable: the other classes' flips into it "
            "bring its expected IoU to %.1f",
            100 * solved.target[c],
            names[c],
            100 * solved.expected_iou[c],
        )
    if not solved.converged:
        log.warning("flip-rate solver stopped after %d iterations", solved.iterations)
    rng = np.random.default_rng([config.seed, NOISE_STREAM])
    labels = (
        draw_correlated_labels(majority, solved.rates, lookalike, sizes=sizes, rng=rng)
        if correlated
        else draw_labels(majority, solved.rates, rows, sizes=sizes, rng=rng)
    )
    realised = iou_per_class(realised_confusion(pool, labels))
    realised_rates = flipped_share(majority, labels, sizes, num_classes=num_classes)

    def maps() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        offset = 0
        for index, sample in enumerate(
            progress(ws.samples, desc="pseudo-labels", total=len(ws.samples), enabled=show_progress)
        ):
            segments = _gt_proxy(config, index, ws.read_ground_truth(sample.id))
            count = int(segments.max())
            table = np.concatenate([[IGNORE_INDEX], labels[offset : offset + count]]).astype(
                np.uint8
            )
            offset += count
            yield sample.id, segments, table[segments]

    def per_class(values: np.ndarray | list[float]) -> dict[str, float | None]:
        return {
            n: (None if not np.isfinite(v) else round(float(v), 6))
            for n, v in zip(names, values, strict=True)
        }

    noise = {
        "target_iou": per_class(target_vector(target, names)),
        "capped_classes": [names[c] for c in solved.capped],
        "unreachable_classes": [names[c] for c in solved.unreachable],
        "solved_target_iou": per_class(solved.target),
        "flip_rates": per_class(solved.rates),
        "realised_flip_rates": per_class(realised_rates),
        "expected_iou": per_class(solved.expected_iou),
        "realised_iou": per_class(realised),
        "solver_iterations": solved.iterations,
        "confusion_rows": {n: per_class(row) for n, row in zip(names, rows, strict=True)},
    }
    parameters = {
        **asdict(config),
        "noise_target": target,
        "seed_image_ids": seed_ids,
        config.noise.replace("-", "_"): noise,
    }
    ws.set_initial_maps(maps(), source=config.source, parameters=parameters)
    uncovered = int((majority < 0).sum())
    log.info(
        "%s labels: initial data mIoU %.1f (expected %.1f)",
        config.noise,
        100 * float(np.nanmean(realised)),
        100 * float(np.nanmean(solved.expected_iou)),
    )
    return {
        "segments": int(majority.size) - uncovered,
        "uncovered_segments": uncovered,
        "seed_images": seed_ids,
        "noise": noise,
    }


GROUNDED_SAM_STAGING = "staging/grounded-sam"
"""Per-image Grounded SAM output inside a workspace until every image is done."""


def make_grounded_sam_labels(
    ws: Workspace,
    *,
    config: GroundedSamConfig,
    show_progress: bool = True,
    shard: Shard | None = None,
) -> dict[str, object]:
    """Run Grounded SAM over the workspace's images and store the result as initial labels.

    Per-image results are staged in the workspace (an interrupted run resumes
    there) and become the initial segments and labels in one transaction at
    the end, with source ``grounded-sam`` and the thresholds recorded.
    ``shard``: every rank runs the models on its images (``i mod world``) and stages
    them; rank 0 commits the whole pool; every rank returns the summary.
    """
    from a2lc.pseudo_labels.grounded_sam import RunSummary, read_outputs, run_grounded_sam

    if ws.rounds():  # checked before hours of model time, not after
        raise WorkspaceError("initial labels cannot change after the first round started")
    staging = ws.path / GROUNDED_SAM_STAGING
    mine = share(ws.samples, shard)
    mine_done = run_grounded_sam(
        mine,
        staging,
        config=config,
        class_names=ws.class_names,
        palette=ws.palette,
        show_progress=show_progress and is_writer(shard),
    )
    run = (  # a collective with a shard: every rank has staged its images after it
        mine_done if shard is None else RunSummary.merged(shard.gather(mine_done))
    )
    if not is_writer(shard):
        return _from_writer(shard, None)
    detections = sum(
        len(json.loads((staging / "detections" / f"{s.id}.json").read_text())["classes"])
        for s in ws.samples
    )
    parameters = {
        "detector": str(config.detector),
        "segmenter": str(config.segmenter),
        "box_threshold": config.box_threshold,
        "text_threshold": config.text_threshold,
        "prompts": config.prompts,
        "detections": detections,
    }
    ws.set_initial_maps(
        read_outputs(staging, ws.samples, num_classes=ws.num_classes),
        source="grounded-sam",
        parameters=parameters,
    )
    _remove_staging(staging)
    summary: dict[str, object] = {
        "images": run.images,
        "resumed_from": run.skipped,
        "detections": detections,
        "seconds": run.seconds,
    }
    return _from_writer(shard, summary)
