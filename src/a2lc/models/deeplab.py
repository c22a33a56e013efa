"""DeepLabV3+ with a ResNet encoder (the paper's model, ResNet-101, output stride 16).

Weights come from a local file (``torchvision``-style ResNet state dict); nothing
is downloaded. Tests build it tiny (``layers=(1, 1, 1, 1)``, narrow) with random
weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RESNET101_LAYERS = (3, 4, 23, 3)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, *, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(
            width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNetEncoder(nn.Module):
    """ResNet with output stride 16 (layer4 dilated). Returns (stride-4, stride-16) features."""

    def __init__(self, *, layers: Sequence[int] = RESNET101_LAYERS, base_width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        cin = base_width
        stages = []
        for i, (repeats, stride, dilation) in enumerate(
            zip(layers, (1, 2, 2, 1), (1, 1, 1, 2), strict=True)
        ):
            width = base_width * 2**i
            blocks = [Bottleneck(cin, width, stride=stride)]
            cin = width * Bottleneck.expansion
            blocks += [Bottleneck(cin, width, dilation=dilation) for _ in range(repeats - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.low_channels = base_width * Bottleneck.expansion
        self.high_channels = cin

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        mean = images.new_tensor([0.485, 0.456, 0.406])[:, None, None]
        std = images.new_tensor([0.229, 0.224, 0.225])[:, None, None]
        x = F.relu(self.bn1(self.conv1((images - mean) / std)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        low = self.layer1(x)
        return [low, self.layer4(self.layer3(self.layer2(low)))]

    def load_weights(self, path: Path) -> None:
        """Load a torchvision-style ResNet state dict (the ``fc`` layer is ignored)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        self.load_state_dict(state)


class ASPP(nn.Module):
    def __init__(self, cin: int, cout: int, rates: Sequence[int] = (6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())]
            + [
                nn.Sequential(
                    nn.Conv2d(cin, cout, 3, padding=r, dilation=r, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(),
                )
                for r in rates
            ]
        )
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU()
        )
        self.project = nn.Sequential(
            nn.Conv2d(cout * (len(rates) + 2), cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(
            self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3PlusHead(nn.Module):
    """Decoder of DeepLabV3+: ASPP on stride-16 features, fused with stride-4 features."""

    def __init__(
        self, low_channels: int, high_channels: int, num_classes: int, *, width: int = 256
    ) -> None:
        super().__init__()
        self.aspp = ASPP(high_channels, width)
        self.reduce = nn.Sequential(
            nn.Conv2d(low_channels, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU()
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(width + 48, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.classify = nn.Conv2d(width, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        low, high = features
        high = F.interpolate(
            self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.classify(self.fuse(torch.cat([self.reduce(low), high], dim=1)))
