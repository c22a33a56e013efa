"""Segmentation models (torch is imported only when a model is built or trained)."""

from a2lc.models.config import MODELS, ModelConfig, build_model

__all__ = ["MODELS", "ModelConfig", "build_model"]
