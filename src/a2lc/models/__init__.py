"""Segmentation models (torch is imported only when a model is built or trained)."""

from a2lc.models.config import ModelConfig
from a2lc.models.zoo import MODELS, build_model

__all__ = ["MODELS", "ModelConfig", "build_model"]
