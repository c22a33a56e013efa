"""The one typed config every segmentation model is built from (see :mod:`a2lc.models.zoo`).

Every model takes the same keywords, so a config is saved next to each checkpoint
and is enough to rebuild the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelName = Literal["efficientnet-lite0", "efficientnet-lite2", "deeplabv3plus-resnet101"]


@dataclass(frozen=True)
class ModelConfig:
    """Options shared by every model.

    ``weights``: "imagenet" (the encoder's pretrained weights), "none" (random),
    or a path to encoder weights. ``frozen_encoder``: train only the head, on
    cached encoder features. ``encoder_layers``/``encoder_width`` shrink the
    ResNet encoder (tests); None keeps ResNet-101.
    """

    name: ModelName = "efficientnet-lite0"
    num_classes: int = 0
    weights: str = "imagenet"
    frozen_encoder: bool = True
    head_width: int = 64
    encoder_layers: tuple[int, ...] | None = None
    encoder_width: int = 64
