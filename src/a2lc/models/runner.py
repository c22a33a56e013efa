"""Train-and-predict for the correction loop: one object that knows the samples,
the model config and where encoder features are cached.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from a2lc._atomic import atomic_write_text
from a2lc.data.images import read_image
from a2lc.data.sample import Sample
from a2lc.distributed import Shard, share, synchronise
from a2lc.models.config import ModelConfig
from a2lc.models.segmenter import Segmenter
from a2lc.models.training import (
    FeatureCache,
    FeatureLayout,
    LabelLoader,
    TrainConfig,
    content_key,
    image_tensor,
    load_checkpoint,
    paper_cityscapes_probabilities,
    predict_probabilities,
    resolve_device,
    save_checkpoint,
    seed_everything,
    train,
)
from a2lc.models.zoo import build_model
from a2lc.runtime import configure_threads, feature_memory_budget

EMBEDDING_SCALES = 2
"""Segment embeddings pool the encoder's this-many finest feature maps."""
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"


class ModelRunner:
    """Builds fresh seeded models, trains them, predicts probabilities, saves checkpoints.

    ``samples``: every image the runner may see (pool and evaluation), by id.
    ``cache_dir``: where frozen-encoder features are kept (None: no cache, the
    encoder is fine-tuned). ``feature_cache=False``: a frozen encoder runs on the
    fly on every batch instead of being cached (no cache files at all).
    """

    def __init__(
        self,
        *,
        model_config: ModelConfig,
        train_config: TrainConfig,
        samples: Mapping[str, Sample],
        cache_dir: Path | None,
        show_progress: bool = True,
        feature_cache: bool = True,
    ) -> None:
        configure_threads()
        self.model_config = model_config
        self.train_config = train_config
        self.samples = dict(samples)
        self.show_progress = show_progress
        self.device = resolve_device(train_config.device)
        cached = model_config.frozen_encoder and feature_cache and cache_dir is not None
        self.cache_dir = cache_dir / self.cache_key() if cached and cache_dir is not None else None
        self.on_the_fly = model_config.frozen_encoder and not feature_cache
        self.scratch_dir = cache_dir  # data-parallel training's per-round label files
        # Shared by every model this runner builds: their frozen encoders are identical.
        self._held_features: dict[str, np.ndarray] = {}
        self._feature_layouts: dict[tuple[int, int], FeatureLayout] = {}
        self._image_keys: dict[str, str] = {}

    def cache_key(self) -> str:
        key = f"{self.model_config.name}-{Path(self.model_config.weights).name}"
        # A random frozen encoder depends on the seed; a pretrained one does not.
        return f"{key}-seed{self.train_config.seed}" if self.model_config.weights == "none" else key

    def image_key(self, image_id: str) -> str:
        """Content hash of the image file (once per process), part of its cache file name."""
        if image_id not in self._image_keys:
            path = self.samples[image_id].image_path
            self._image_keys[image_id] = (
                content_key(path)
                if Path(path).is_file()
                else hashlib.sha256(self.load_image(image_id).tobytes()).hexdigest()[:16]
            )
        return self._image_keys[image_id]

    def load_image(self, image_id: str) -> np.ndarray:
        return read_image(self.samples[image_id].image_path)

    def build(self, *, seed: int) -> Segmenter:
        seed_everything(seed)
        return build_model(self.model_config).to(self.device)

    def cache_for(self, model: Segmenter) -> FeatureCache | None:
        if self.cache_dir is None:
            return None
        return FeatureCache(
            self.cache_dir,
            model,
            self.load_image,
            device=self.device,
            memory=self._held_features,
            layouts=self._feature_layouts,
            image_key=self.image_key,
        )

    def fit(
        self,
        image_ids: Sequence[str],
        load_labels: LabelLoader,
        *,
        seed: int,
        shard: Shard | None = None,
    ) -> tuple[Segmenter, list[float]]:
        """A fresh model (seeded) trained on ``image_ids``; returns it and the loss per epoch.

        ``shard``: data-parallel over the ranks of a process group; each rank encodes the
        missing cache files of its own images (``i mod world``), and the ranks of one
        machine split the in-memory feature budget.
        """
        model = self.build(seed=seed)
        cache = self.cache_for(model)
        if cache is not None:
            mine = share(image_ids, shard)
            cache.fill(mine, show_progress=self.show_progress)
            synchronise(shard)
            budget = feature_memory_budget() // (1 if shard is None else shard.local_world)
            cache.hold(image_ids, memory_budget=budget)
        history = train(
            model,
            image_ids,
            shapes={i: self.samples[i].shape for i in image_ids},
            load_labels=load_labels,
            load_image=self.load_image,
            config=replace(self.train_config, seed=seed),
            cache=cache,
            show_progress=self.show_progress,
            frozen_encoder=self.frozen,
            shard=shard,
            label_dir=(
                self.scratch_dir / f"train-labels-seed{seed}"
                if shard is not None and self.scratch_dir is not None
                else None
            ),
        )
        return model, history

    def predict(self, model: Segmenter, image_id: str) -> np.ndarray:
        """``C×H×W`` float32 probabilities at the image's label resolution."""
        return predict_probabilities(
            model,
            image_id,
            shape=self.samples[image_id].shape,
            load_image=self.load_image,
            cache=self.cache_for(model),
        )

    def predict_paper_cityscapes(self, model: Segmenter, image_id: str) -> np.ndarray:
        """ABC's probabilities as the reference computes them on Cityscapes (see
        :func:`~a2lc.models.training.paper_cityscapes_probabilities`)."""
        return paper_cityscapes_probabilities(model, self.load_image(image_id))

    def segment_embeddings(
        self, model: Segmenter, image_id: str, segments: np.ndarray, ids: np.ndarray
    ) -> np.ndarray:
        """``(M, E)`` float32 mean encoder features over each segment in ``ids``.

        The two finest encoder scales, each pixel taking the feature cell it falls
        in; ``segments``: ``H×W`` at the image's resolution.
        """
        import torch

        from a2lc.data.segments import pool_features

        shape = self.samples[image_id].shape
        cache = self.cache_for(model)
        with torch.no_grad():
            if cache is not None:
                maps = cache.get(image_id, shape=shape)
            else:
                model.eval()
                maps = model.features(image_tensor(self.load_image(image_id))[None].to(self.device))
        arrays = [feature[0].float().cpu().numpy() for feature in maps[:EMBEDDING_SCALES]]
        return pool_features(segments, ids, arrays)

    @property
    def frozen(self) -> bool:
        """Whether the encoder stays fixed (only the head is trained and checkpointed)."""
        return self.cache_dir is not None or self.on_the_fly

    def save(
        self, model: Segmenter, folder: Path, *, extra: Mapping[str, object] | None = None
    ) -> None:
        """Checkpoint + the configs that rebuild it, side by side in ``folder``."""
        save_checkpoint(folder / WEIGHTS_FILE, model, trainable_only=self.frozen)
        config = {
            "model": asdict(self.model_config),
            "train": asdict(self.train_config),
            "frozen_encoder_cache": self.cache_dir is not None,
            "frozen_encoder": self.frozen,
            **(extra or {}),
        }
        atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=1, sort_keys=True))

    def load(self, folder: Path, *, seed: int) -> Segmenter:
        model = self.build(seed=seed)
        load_checkpoint(folder / WEIGHTS_FILE, model, trainable_only=self.frozen)
        return model.to(self.device)
