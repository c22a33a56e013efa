"""Frozen-encoder features computed once per image and kept as float16 files (or in memory)."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from a2lc._atomic import atomic_write_bytes
from a2lc._progress import progress
from a2lc.models.segmenter import Segmenter

log = logging.getLogger(__name__)


ImageLoader = Callable[[str], np.ndarray]
"""image id → ``H×W×3`` uint8."""


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
