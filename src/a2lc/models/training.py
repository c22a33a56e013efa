"""Training and prediction, with an optional cache of frozen-encoder features.

Frozen-encoder mode computes the encoder's multi-scale features once per image
(float16 files in the workspace) and trains only the head, so a round costs a
few head epochs instead of full forward/backward passes.
"""

from __future__ import annotations

import hashlib
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
from a2lc.models.segmenter import Segmenter
from a2lc.runtime import release_free_memory

log = logging.getLogger(__name__)

ImageLoader = Callable[[str], np.ndarray]
"""image id → ``H×W×3`` uint8."""
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


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """``H×W×3`` uint8 → ``3×H×W`` float32 in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).div_(255.0)


FeatureLayout = tuple[tuple[int, int, int], ...]
"""Shapes ``(C_i, H_i, W_i)`` of an image's encoder features, finest first."""


def _hw(shape: Sequence[int]) -> tuple[int, int]:
    return int(shape[0]), int(shape[1])


def _chw(shape: Sequence[int]) -> tuple[int, int, int]:
    return int(shape[0]), int(shape[1]), int(shape[2])


def content_key(path: Path) -> str:
    """A short hash of a file's bytes: cached features follow the image, not its name."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class FeatureCache:
    """Frozen-encoder features per image: float16 ``<id>-<content hash>.npy`` files in ``folder``.

    The file name carries a hash of the image (``image_key``; the runner hashes the
    file's bytes; by default the decoded pixels, once per image and process), so a
    replaced image, or another dataset's image with the same id in a shared cache
    folder, never reuses stale features.

    Each file is one flat array, the scales concatenated (their shapes follow from
    the image size and the encoder, see :meth:`layout`), so it can be memory-mapped.
    :meth:`hold` keeps a set of images' features in memory (float16) when they fit in
    ``memory_budget`` bytes, so training reads each file once per process instead
    of once per epoch; otherwise every read memory-maps the file and copies out
    only what it needs, so resident memory does not grow with the pool.
    ``memory`` may be shared between caches of the same encoder (the runner does).
    """

    def __init__(
        self,
        folder: Path,
        model: Segmenter,
        load_image: ImageLoader,
        *,
        device: torch.device,
        memory: dict[str, np.ndarray] | None = None,
        layouts: dict[tuple[int, int], FeatureLayout] | None = None,
        image_key: Callable[[str], str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.image_key = image_key if image_key is not None else self._pixel_key
        self._pixel_keys: dict[str, str] = {}
        self.model = model
        self.load_image = load_image
        self.device = device
        self.memory: dict[str, np.ndarray] = {} if memory is None else memory
        self.layouts: dict[tuple[int, int], FeatureLayout] = {} if layouts is None else layouts

    def path(self, image_id: str) -> Path:
        return self.folder / f"{image_id}-{self.image_key(image_id)}.npy"

    def _pixel_key(self, image_id: str) -> str:
        """A hash of the image's decoded pixels and shape (the default ``image_key``)."""
        if image_id not in self._pixel_keys:
            pixels = np.ascontiguousarray(self.load_image(image_id))
            digest = hashlib.sha256(str(pixels.shape).encode() + pixels.tobytes()).hexdigest()
            self._pixel_keys[image_id] = digest[:16]
        return self._pixel_keys[image_id]

    @torch.no_grad()
    def _encode(self, image_id: str) -> list[np.ndarray]:
        self.model.encoder.eval()
        image = self.load_image(image_id)
        images = image_tensor(image)[None].to(self.device)
        arrays = [f[0].to("cpu", torch.float16).numpy() for f in self.model.features(images)]
        self.layouts[_hw(image.shape)] = tuple(_chw(a.shape) for a in arrays)
        return arrays

    @torch.no_grad()
    def layout(self, shape: tuple[int, int]) -> FeatureLayout:
        """Feature shapes for an ``(H, W)`` image (one encoder pass on zeros per new size)."""
        if shape not in self.layouts:
            self.model.encoder.eval()
            zeros = torch.zeros((1, 3, *shape), device=self.device)
            self.layouts[shape] = tuple(_chw(f.shape[1:]) for f in self.model.features(zeros))
        return self.layouts[shape]

    def ensure(self, image_id: str) -> None:
        """Compute and store the image's features unless the file exists."""
        path = self.path(image_id)
        if path.is_file():
            return
        arrays = self._encode(image_id)
        buffer = io.BytesIO()
        np.save(buffer, np.concatenate([a.reshape(-1) for a in arrays]).astype(np.float16))
        atomic_write_bytes(path, buffer.getvalue())

    def _flat(self, image_id: str) -> np.ndarray:
        held = self.memory.get(image_id)
        if held is not None:
            return held
        self.ensure(image_id)
        return self._read(image_id, mmap=True)

    def _read(self, image_id: str, *, mmap: bool) -> np.ndarray:
        """The image's cache file; a truncated or damaged one is recomputed, once."""
        path = self.path(image_id)
        try:
            return np.asarray(np.load(path, mmap_mode="r" if mmap else None))
        except (ValueError, OSError, EOFError):
            log.warning("%s is damaged: recomputing the features", path)
            path.unlink(missing_ok=True)
            self.ensure(image_id)
            return np.asarray(np.load(path, mmap_mode="r" if mmap else None))

    def get(self, image_id: str, *, shape: tuple[int, int] | None = None) -> list[torch.Tensor]:
        """Features ``[1×C_i×H_i×W_i]`` (float32 on the device), computed once and stored.

        ``shape``: the image's ``(H, W)``; read from the image when not given.
        """
        flat = self._flat(image_id)
        if shape is None:
            shape = _hw(self.load_image(image_id).shape)
        layout = self.layout(shape)
        sizes = [int(np.prod(dims)) for dims in layout]
        if sum(sizes) != flat.size:
            raise ValueError(
                f"{self.path(image_id)}: {flat.size} feature values, the encoder makes "
                f"{sum(sizes)}; delete the cache folder to recompute it"
            )
        tensors = []
        offset = 0
        for dims, size in zip(layout, sizes, strict=True):
            part = np.array(flat[offset : offset + size], dtype=np.float32).reshape(dims)
            tensors.append(torch.from_numpy(part)[None].to(self.device))
            offset += size
        return tensors

    def fill(self, image_ids: Sequence[str], *, show_progress: bool = True) -> None:
        missing = [i for i in image_ids if not self.path(i).is_file()]
        for image_id in progress(
            missing, desc="encoder features", total=len(missing), enabled=show_progress
        ):
            self.ensure(image_id)

    def hold(self, image_ids: Sequence[str], *, memory_budget: int) -> bool:
        """Keep these images' features in memory if they fit in ``memory_budget`` bytes.

        Returns whether they are held; otherwise reads stay memory-mapped.
        """
        self.fill(image_ids, show_progress=False)
        needed = sum(self.path(i).stat().st_size for i in image_ids if i not in self.memory) + sum(
            a.nbytes for a in self.memory.values()
        )
        if needed > memory_budget:
            log.info(
                "encoder features (%.0f MB) exceed the in-memory budget (%.0f MB): memory-mapped",
                needed / 2**20,
                memory_budget / 2**20,
            )
            return False
        for image_id in image_ids:
            if image_id not in self.memory:
                self.memory[image_id] = self._read(image_id, mmap=False)
        return True


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


@torch.no_grad()
def predict_probabilities(
    model: Segmenter,
    image_id: str,
    *,
    shape: tuple[int, int],
    load_image: ImageLoader,
    cache: FeatureCache | None = None,
) -> np.ndarray:
    """Softmax probabilities ``C×H×W`` float32 of one image at label resolution ``shape``."""
    model.eval()
    device = next(model.parameters()).device
    if cache is not None:
        features = cache.get(image_id, shape=shape)
    else:
        features = model.features(image_tensor(load_image(image_id))[None].to(device))
    logits = model.logits(features, shape)
    return np.asarray(logits.softmax(dim=1)[0].float().cpu().numpy(), dtype=np.float32)


def save_checkpoint(path: Path, model: Segmenter, *, trainable_only: bool) -> None:
    """Atomically save the model's weights (only the head when the encoder is frozen)."""
    module = model.head if trainable_only else model
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: Path, model: Segmenter, *, trainable_only: bool) -> None:
    import pickle

    from a2lc.errors import WorkspaceError

    module = model.head if trainable_only else model
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except FileNotFoundError:
        raise WorkspaceError(f"{path} is missing: the round's model was never saved") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError) as exc:
        raise WorkspaceError(
            f"{path} is truncated or not this model's checkpoint ({str(exc)[:120]})"
        ) from None


PAPER_CITYSCAPES_CROP = 768
"""The reference's Cityscapes training crop; ABC's probabilities come from half of it."""


@torch.no_grad()
def paper_cityscapes_probabilities(
    model: Segmenter, image: np.ndarray, *, crop: int = PAPER_CITYSCAPES_CROP
) -> np.ndarray:
    """``C×H×W`` probabilities as the reference computes ABC's on Cityscapes.

    The image is shrunk to ``crop/2 × crop/2`` (bilinear), zero-padded to
    ``crop × crop``, predicted and softmaxed; the ``crop/2`` corner is cropped and
    resized back to ``H×W`` (bilinear). LCM uses label-resolution probabilities.
    """
    model.eval()
    device = next(model.parameters()).device
    height, width = image.shape[:2]
    half = crop // 2
    tensor = image_tensor(image)[None].to(device)
    small = F.interpolate(tensor, size=(half, half), mode="bilinear", align_corners=False)
    padded = F.pad(small, (0, crop - half, 0, crop - half))
    probs = model(padded).softmax(dim=1)[:, :, :half, :half]
    back = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
    return np.asarray(back[0].float().cpu().numpy(), dtype=np.float32)
