"""Segmentation models by name: ``build_model(ModelConfig(name=..., num_classes=...))``.

Returns a :class:`~a2lc.models.segmenter.Segmenter`: an encoder producing
multi-scale features and a head producing logits. This module imports torch only
when a model is built.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from a2lc.models.config import ModelConfig
from a2lc.registry import Registry

if TYPE_CHECKING:
    from a2lc.models.efficientnet_lite import LiteVariant
    from a2lc.models.segmenter import Segmenter


MODELS: Registry[Callable[[ModelConfig], Segmenter]] = Registry("model")


def build_model(config: ModelConfig) -> Segmenter:
    """Build the model registered as ``config.name``; an unknown name lists valid ones."""
    if config.num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {config.num_classes}")
    return MODELS.get(config.name)(config)


def _efficientnet_lite(config: ModelConfig, variant: LiteVariant) -> Segmenter:
    from a2lc.models.efficientnet_lite import EfficientNetLiteEncoder
    from a2lc.models.heads import MultiScaleHead
    from a2lc.models.segmenter import Segmenter

    encoder = EfficientNetLiteEncoder(variant)
    if config.weights == "imagenet":
        encoder.load_imagenet()
    elif config.weights != "none":
        encoder.load_imagenet(Path(config.weights))
    head = MultiScaleHead(encoder.out_channels, config.num_classes, width=config.head_width)
    return Segmenter(encoder, head, config)


@MODELS.register("efficientnet-lite0")
def _efficientnet_lite0(config: ModelConfig) -> Segmenter:
    return _efficientnet_lite(config, "lite0")


@MODELS.register("efficientnet-lite2")
def _efficientnet_lite2(config: ModelConfig) -> Segmenter:
    """EfficientNet-Lite2 (ImageNet weights from the extra ``a2lc[lite2]``): a stronger
    frozen encoder at about twice Lite0's encoding cost."""
    return _efficientnet_lite(config, "lite2")


@MODELS.register("deeplabv3plus-resnet101")
def _deeplabv3plus(config: ModelConfig) -> Segmenter:
    from a2lc.models.deeplab import RESNET101_LAYERS, DeepLabV3PlusHead, ResNetEncoder
    from a2lc.models.segmenter import Segmenter

    encoder = ResNetEncoder(
        layers=config.encoder_layers or RESNET101_LAYERS, base_width=config.encoder_width
    )
    if config.weights not in ("none", "imagenet"):
        encoder.load_weights(Path(config.weights))
    elif config.weights == "imagenet":
        raise ValueError(
            "deeplabv3plus-resnet101 has no bundled ImageNet weights: pass weights=<path to a "
            "torchvision ResNet-101 state dict> (downloaded beforehand) or weights='none'"
        )
    head = DeepLabV3PlusHead(
        encoder.low_channels,
        encoder.high_channels,
        config.num_classes,
        width=max(8, config.head_width * 4),
    )
    return Segmenter(encoder, head, config)
