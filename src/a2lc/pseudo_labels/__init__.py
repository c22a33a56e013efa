"""Pseudo-label sources as array code: Grounded SAM, superpixel segments, noise models."""
