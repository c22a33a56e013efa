"""Initial pseudo-labels for a workspace: segments, labelled by a weak seed model.

The seed model is the default segmentation model trained on a handful of
ground-truth images (``seed_images``). Each segment gets its majority
prediction; segments the seed model is unsure about are left uncovered, as a
detector's misses are. Deterministic under ``seed``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from a2lc._progress import progress
from a2lc.errors import WorkspaceError
from a2lc.models.config import ModelConfig
from a2lc.models.runner import ModelRunner
from a2lc.models.training import TrainConfig
from a2lc.pseudo_labels.segments import (
    GtProxyConfig,
    gt_proxy_segments,
    label_segments_by_prediction,
    superpixel_segments,
)
from a2lc.workspace import Workspace

log = logging.getLogger(__name__)

SegmentSource = Literal["gt-proxy", "superpixels"]


@dataclass(frozen=True)
class PseudoLabelConfig:
    """How the initial segments and labels are made (recorded in the workspace)."""

    source: SegmentSource = "gt-proxy"
    seed_images: int = 5
    seed: int = 0
    min_confidence: float = 0.5
    """Segments whose mean seed-model confidence is below this stay uncovered."""
    seed_epochs: int = 40
    superpixels: int = 150
    gt_proxy: GtProxyConfig = field(default_factory=GtProxyConfig)


def choose_seed_images(ws: Workspace, config: PseudoLabelConfig) -> list[str]:
    """``seed_images`` pool images picked by ``seed``; each must have ground truth."""
    samples = ws.samples
    if not 0 < config.seed_images <= len(samples):
        raise WorkspaceError(f"--seed-images must be 1..{len(samples)}, got {config.seed_images}")
    rng = np.random.default_rng([config.seed, 0x5EED])
    picked = sorted(rng.choice(len(samples), size=config.seed_images, replace=False).tolist())
    missing = [samples[i].id for i in picked if samples[i].gt_path is None]
    if missing:
        raise WorkspaceError(
            f"the seed model needs ground truth for its seed images; missing for {missing}"
        )
    return [samples[i].id for i in picked]


def make_pseudo_labels(
    ws: Workspace,
    *,
    config: PseudoLabelConfig,
    cache_dir: Path | None = None,
    model_config: ModelConfig | None = None,
    show_progress: bool = True,
) -> dict[str, object]:
    """Write initial segments and labels into ``ws``; return a summary.

    The seed model is ``model_config`` (default: the default model) trained for
    ``config.seed_epochs`` on the seed images; encoder features are cached in
    ``cache_dir`` (default: the workspace's cache).
    """
    if config.source == "gt-proxy" and not ws.has_ground_truth:
        raise WorkspaceError(
            "gt-proxy segments are derived from ground truth, for benchmarks only; this dataset has none "
            "(use --source superpixels)"
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
    model, _ = seed_runner.fit(seed_ids, ws.read_ground_truth, seed=config.seed)
    counts = {"segments": 0, "uncovered_segments": 0}

    def maps() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for index, sample in enumerate(
            progress(ws.samples, desc="pseudo-labels", total=len(ws.samples), enabled=show_progress)
        ):
            if config.source == "gt-proxy":
                rng = np.random.default_rng([config.seed, index])
                segments = gt_proxy_segments(
                    ws.read_ground_truth(sample.id), rng=rng, config=config.gt_proxy
                )
            else:
                segments = superpixel_segments(
                    seed_runner.load_image(sample.id), num_segments=config.superpixels
                )
            probs = seed_runner.predict(model, sample.id)
            kept, labels = label_segments_by_prediction(
                probs, segments, min_confidence=config.min_confidence
            )
            before = int(segments.max())
            counts["segments"] += int(kept.max())
            counts["uncovered_segments"] += before - int(kept.max())
            yield sample.id, kept, labels

    parameters = {**asdict(config), "seed_image_ids": seed_ids}
    ws.set_initial_maps(maps(), source=config.source, parameters=parameters)
    return {**counts, "seed_images": seed_ids}
