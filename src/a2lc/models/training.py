"""Training a segmenter, on one process or several (torchrun).

Frozen-encoder mode computes the encoder's multi-scale features once per image
(:mod:`a2lc.models.feature_cache`) and trains only the head, so a round costs a
few head epochs instead of full forward/backward passes. Prediction and
checkpoints are in :mod:`a2lc.models.inference` (their names are re-exported here).
"""

from __future__ import annotations

import io
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from a2lc._atomic import atomic_write_bytes
from a2lc._progress import progress
from a2lc.data.sample import IGNORE_INDEX
from a2lc.distributed import Shard, share, synchronise
from a2lc.models.feature_cache import (  # re-exported: where they were defined before
    FeatureCache,
    FeatureLayout,
    ImageLoader,
    content_key,
    image_tensor,
)
from a2lc.models.inference import (  # re-exported: where they were defined before
    PAPER_CITYSCAPES_CROP,
    load_checkpoint,
    paper_cityscapes_probabilities,
    predict_probabilities,
    save_checkpoint,
)
from a2lc.models.segmenter import Segmenter
from a2lc.runtime import release_free_memory

__all__ = [
    "PAPER_CITYSCAPES_CROP",
    "FeatureCache",
    "FeatureLayout",
    "ImageLoader",
    "LabelLoader",
    "TrainConfig",
    "content_key",
    "image_tensor",
    "load_checkpoint",
    "paper_cityscapes_probabilities",
    "predict_probabilities",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "train",
]

log = logging.getLogger(__name__)

LabelLoader = Callable[[str], np.ndarray]
"""image id → ``H×W`` uint8 (255 = ignore)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation options; saved with every checkpoint."""

    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    loss_stride: int = 4
    """Compute the loss on labels sampled every ``loss_stride`` pixels (1 = full resolution)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _batches(
    image_ids: Sequence[str],
    shapes: dict[str, tuple[int, int]],
    batch_size: int,
    rng: random.Random,
) -> list[list[str]]:
    """Shuffled batches of images that share a size (so they stack)."""
    by_shape: dict[tuple[int, int], list[str]] = {}
    for image_id in image_ids:
        by_shape.setdefault(shapes[image_id], []).append(image_id)
    batches = []
    for ids in by_shape.values():
        ids = list(ids)
        rng.shuffle(ids)
        batches += [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    rng.shuffle(batches)
    return batches


def train(
    model: Segmenter,
    image_ids: Sequence[str],
    *,
    shapes: dict[str, tuple[int, int]],
    load_labels: LabelLoader,
    load_image: ImageLoader,
    config: TrainConfig,
    cache: FeatureCache | None = None,
    show_progress: bool = True,
    frozen_encoder: bool | None = None,
    shard: Shard | None = None,
    label_dir: Path | None = None,
) -> list[float]:
    """Train ``model`` with cross-entropy (255 ignored); return the mean loss per epoch.

    With a ``cache`` the encoder stays frozen and only the head is trained on the
    cached features; without one the whole model is fine-tuned, unless
    ``frozen_encoder`` is True: then the frozen encoder runs on every batch (no
    cache: on a GPU that is cheaper than reading cached features back). Seeded and
    deterministic for a given config and device.

    ``shard`` (torch.distributed, :mod:`a2lc.distributed`): data-parallel training.
    Every rank draws the same global batches; rank ``k`` of ``W`` takes images
    ``k, k+W, ...`` of each, the trainable part runs under DistributedDataParallel,
    batch-norm statistics cover the global batch (:mod:`a2lc.models.ddp`) and the
    loss is normalised by the labelled pixels of the global batch. So each step is
    the one process's step on the same batch, up to floating-point summation order.
    ``label_dir`` (with ``shard``): a folder every rank reaches where each rank leaves
    its own images' labels at the loss stride, so that no rank holds every image's
    (without one each rank holds every image's).
    """
    if shard is not None:
        return _train_distributed(
            model,
            image_ids,
            shapes=shapes,
            load_labels=load_labels,
            load_image=load_image,
            config=config,
            cache=cache,
            show_progress=show_progress,
            frozen_encoder=frozen_encoder,
            shard=shard,
            label_dir=label_dir,
        )
    started = time.perf_counter()
    device, frozen, optimizer, scheduler, rng = _optimisation(
        model, image_ids, shapes=shapes, config=config, cache=cache, frozen_encoder=frozen_encoder
    )
    history: list[float] = []
    held_labels = _held_labels(
        image_ids, load_labels, config.loss_stride, shapes, show_progress=show_progress
    )
    for epoch in range(config.epochs):
        model.train()
        if frozen:
            model.encoder.eval()
        losses = []
        batches = _batches(image_ids, shapes, config.batch_size, rng)
        for batch in progress(
            batches,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            total=len(batches),
            unit="batch",
            enabled=show_progress,
            log_done=False,
        ):
            targets = torch.stack([held_labels[i] for i in batch]).to(device).long()
            if (targets == IGNORE_INDEX).all():
                continue
            inputs = _batch_inputs(
                model,
                batch,
                keep=len(batch),
                frozen=frozen,
                cache=cache,
                shapes=shapes,
                load_image=load_image,
                device=device,
            )
            features = inputs if frozen else model.features(inputs)  # type: ignore[arg-type]
            logits = model.logits(features, tuple(targets.shape[-2:]))  # type: ignore[arg-type]
            loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)) if losses else float("nan"))
        log.debug("epoch %d loss %.4f", epoch + 1, history[-1])
        release_free_memory()
    if show_progress and history:
        log.info(
            "trained on %d images, %d epochs (%s) in %.1f s, loss %.3f → %.3f",
            len(image_ids),
            config.epochs,
            (
                "head on cached features"
                if cache is not None
                else "head, encoder run on the fly"
                if frozen
                else "whole model"
            ),
            time.perf_counter() - started,
            history[0],
            history[-1],
        )
    return history


def _optimisation(
    model: Segmenter,
    image_ids: Sequence[str],
    *,
    shapes: dict[str, tuple[int, int]],
    config: TrainConfig,
    cache: FeatureCache | None,
    frozen_encoder: bool | None,
) -> tuple[
    torch.device, bool, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, random.Random
]:
    """Seed, place the model, freeze the encoder or not; the device, whether it is
    frozen, the optimiser, its poly schedule and the batch-order generator."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    model.to(device)
    frozen = cache is not None if frozen_encoder is None else frozen_encoder
    for p in model.encoder.parameters():
        p.requires_grad_(not frozen)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    rng = random.Random(config.seed)
    steps_per_epoch = len(_batches(image_ids, shapes, config.batch_size, random.Random(0)))
    total = max(1, steps_per_epoch * config.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - step / total) ** 0.9)
    return device, frozen, optimizer, scheduler, rng


def _batch_inputs(
    model: Segmenter,
    image_ids: Sequence[str],
    *,
    keep: int,
    frozen: bool,
    cache: FeatureCache | None,
    shapes: dict[str, tuple[int, int]],
    load_image: ImageLoader,
    device: torch.device,
) -> list[torch.Tensor] | torch.Tensor:
    """A batch's inputs to the trained part: the frozen encoder's features (cached, or
    computed without gradients), else the images (the whole model trains). Only the
    first ``keep`` images stay (a rank's empty part of a batch keeps none)."""
    if frozen and cache is not None:
        per_image = [cache.get(i, shape=shapes[i]) for i in image_ids]
        return [torch.cat(scale)[:keep] for scale in zip(*per_image, strict=True)]
    images = torch.stack([image_tensor(load_image(i)) for i in image_ids])[:keep].to(device)
    if not frozen:
        return images
    with torch.no_grad():
        return model.features(images)


def _train_distributed(
    model: Segmenter,
    image_ids: Sequence[str],
    *,
    shapes: dict[str, tuple[int, int]],
    load_labels: LabelLoader,
    load_image: ImageLoader,
    config: TrainConfig,
    cache: FeatureCache | None,
    show_progress: bool,
    frozen_encoder: bool | None,
    shard: Shard,
    label_dir: Path | None,
) -> list[float]:
    """:func:`train` over the ranks of a process group (see its ``shard``)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from a2lc.models.ddp import TrainStep, global_batch_norm

    started = time.perf_counter()
    device, frozen, optimizer, scheduler, rng = _optimisation(
        model, image_ids, shapes=shapes, config=config, cache=cache, frozen_encoder=frozen_encoder
    )
    history: list[float] = []
    stride = config.loss_stride
    targets_of = _shared_labels(image_ids, load_labels, stride, shard, label_dir, shapes)
    with global_batch_norm(model.head if frozen else model):
        ddp = DistributedDataParallel(
            TrainStep(model, from_features=frozen),
            device_ids=[device.index]
            if device.type == "cuda" and device.index is not None
            else None,
            forward_sync_buffers=False,  # running statistics are the same on every rank anyway
        )
        for epoch in range(config.epochs):
            model.train()
            if frozen:
                model.encoder.eval()
            epoch_loss = torch.zeros(2, dtype=torch.float64, device=device)  # Σ losses, steps
            batches = _batches(image_ids, shapes, config.batch_size, rng)
            for batch in progress(
                batches,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                total=len(batches),
                unit="batch",
                enabled=show_progress,
                log_done=False,
            ):
                part = batch[shard.rank :: shard.world]
                # A rank with no image in this batch still steps (collectives), on an
                # empty batch of the right shape.
                loaded = part or batch[:1]
                targets = torch.stack([targets_of(i) for i in loaded])
                targets = targets[: len(part)].to(device).long()
                # On the device: NCCL reduces only GPU tensors.
                labelled = (targets != IGNORE_INDEX).sum().to(torch.float64).reshape(1)
                dist.all_reduce(labelled)
                if labelled.item() == 0:
                    continue
                inputs = _batch_inputs(
                    model,
                    loaded,
                    keep=len(part),
                    frozen=frozen,
                    cache=cache,
                    shapes=shapes,
                    load_image=load_image,
                    device=device,
                )
                logits = ddp(inputs, tuple(targets.shape[-2:]))
                local = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
                # DDP averages gradients over ranks; × world makes them the global mean's.
                loss = local * (shard.world / float(labelled.item()))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                scheduler.step()
                epoch_loss += torch.tensor(
                    [local.item() / float(labelled.item()), 1.0 / shard.world],
                    dtype=torch.float64,
                    device=device,
                )
            dist.all_reduce(epoch_loss)
            history.append(
                float(epoch_loss[0] / epoch_loss[1]) if epoch_loss[1] > 0 else float("nan")
            )
            log.debug("epoch %d loss %.4f", epoch + 1, history[-1])
    if label_dir is not None:
        synchronise(shard)
        if shard.writer:
            shutil.rmtree(label_dir, ignore_errors=True)
    if show_progress and history:
        log.info(
            "trained on %d images, %d epochs, %d processes in %.1f s, loss %.3f → %.3f",
            len(image_ids),
            config.epochs,
            shard.world,
            time.perf_counter() - started,
            history[0],
            history[-1],
        )
    return history


def _shared_labels(
    image_ids: Sequence[str],
    load: LabelLoader,
    stride: int,
    shard: Shard,
    folder: Path | None,
    shapes: dict[str, tuple[int, int]],
) -> Callable[[str], torch.Tensor]:
    """image id → its training labels at the loss stride, for data-parallel training.

    With ``folder``, each rank decodes its own images' labels once (image ``k`` of
    ``image_ids`` is rank ``k mod world``'s) into small ``.npy`` files there, and every
    rank reads any image's file when a batch needs it (kilobytes, so memory does not
    grow with the pool). Without one, every rank holds every image's
    (:func:`_held_labels`).
    """
    if folder is None:
        return _held_labels(image_ids, load, stride, shapes).__getitem__
    if shard.writer:
        shutil.rmtree(folder, ignore_errors=True)  # left by an interrupted run
        folder.mkdir(parents=True)
    synchronise(shard)
    for image_id in share(image_ids, shard):
        buffer = io.BytesIO()
        np.save(buffer, _at_loss_stride(load(image_id), stride))
        atomic_write_bytes(folder / f"{image_id}.npy", buffer.getvalue())
    synchronise(shard)
    return lambda image_id: torch.from_numpy(np.load(folder / f"{image_id}.npy"))


def _held_labels(
    image_ids: Sequence[str],
    load: LabelLoader,
    stride: int,
    shapes: dict[str, tuple[int, int]],
    *,
    show_progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Every image's training labels at the loss stride, decoded before training starts.

    One uint8 block per image size holds them all (the tensors are views of it).
    Decoded lazily in the first epoch instead, each small array landed between that
    epoch's large temporaries and kept their pages resident, so peak memory grew with
    the pool; the decoding's own temporaries are handed back before training.
    """
    offset = stride // 2
    by_shape: dict[tuple[int, int], list[str]] = {}
    for image_id in image_ids:
        height, width = shapes[image_id]
        strided = (len(range(offset, height, stride)), len(range(offset, width, stride)))
        by_shape.setdefault(strided, []).append(image_id)
    held: dict[str, torch.Tensor] = {}
    for strided, ids in by_shape.items():
        block = np.empty((len(ids), *strided), dtype=np.uint8)
        decoding = progress(ids, desc="training labels", total=len(ids), enabled=show_progress)
        for k, image_id in enumerate(decoding):
            block[k] = _at_loss_stride(load(image_id), stride)
            held[image_id] = torch.from_numpy(block[k])
    release_free_memory()
    return held


def _at_loss_stride(labels: np.ndarray, stride: int) -> np.ndarray:
    """Labels sampled at the centre of every ``stride``×``stride`` cell (nearest neighbour).

    uint8 (a byte per sampled pixel); batches are widened to int64 on use.
    """
    offset = stride // 2
    return np.ascontiguousarray(labels[offset::stride, offset::stride], dtype=np.uint8)
