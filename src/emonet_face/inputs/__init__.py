"""Image input: finding inputs (files, folders, globs, shards) and decoding images robustly."""

from emonet_face.inputs.discovery import IMAGE_SUFFIXES, SHARD_SUFFIXES, VIDEO_SUFFIXES, discover_inputs
from emonet_face.inputs.images import load_image

__all__ = ["IMAGE_SUFFIXES", "SHARD_SUFFIXES", "VIDEO_SUFFIXES", "discover_inputs", "load_image"]
