"""The segmentation model: an encoder and a head (built by :mod:`a2lc.models.zoo`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from a2lc.models.config import ModelConfig


class Segmenter(nn.Module):
    """Encoder + head. ``forward(images B×3×H×W in [0, 1])`` → logits ``B×K×H×W``."""

    def __init__(self, encoder: nn.Module, head: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.config = config

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.encoder(images))

    def logits(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Head logits upsampled (bilinear) to ``size`` = (H, W)."""
        return F.interpolate(self.head(features), size=size, mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(images), tuple(images.shape[-2:]))  # type: ignore[arg-type]


__all__ = ["Segmenter"]
