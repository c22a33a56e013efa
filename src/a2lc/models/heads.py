"""Light multi-scale decoder head: project each scale, upsample to the finest, fuse."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MultiScaleHead(nn.Module):
    """Features ``[B×C_i×H_i×W_i]`` (finest first) → logits ``B×K×H_0×W_0`` at the finest scale."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, width: int = 64) -> None:
        super().__init__()
        self.project = nn.ModuleList(conv_bn_relu(c, width, 1) for c in in_channels)
        self.fuse = conv_bn_relu(width * len(in_channels), 2 * width, 3)
        self.classify = nn.Conv2d(2 * width, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        maps = [
            F.interpolate(p(f), size=size, mode="bilinear", align_corners=False) if i else p(f)
            for i, (p, f) in enumerate(zip(self.project, features, strict=True))
        ]
        return self.classify(self.fuse(torch.cat(maps, dim=1)))
