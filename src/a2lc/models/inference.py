"""Prediction with a trained model, and saving and loading its weights."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from a2lc._atomic import atomic_write_bytes
from a2lc.models.feature_cache import FeatureCache, ImageLoader, image_tensor
from a2lc.models.segmenter import Segmenter


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
