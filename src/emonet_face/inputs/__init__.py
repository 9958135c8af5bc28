"""Image input: finding inputs (files, folders, globs, shards), decoding images robustly, and the
source stage that turns an input into decoded images."""

from emonet_face.inputs.discovery import (
    IMAGE_SUFFIXES,
    SHARD_SUFFIXES,
    VIDEO_SUFFIXES,
    FoundInputs,
    discover_inputs,
    find_inputs,
)
from emonet_face.inputs.images import load_image
from emonet_face.inputs.sources import ImageSource

__all__ = [
    "IMAGE_SUFFIXES",
    "SHARD_SUFFIXES",
    "VIDEO_SUFFIXES",
    "FoundInputs",
    "ImageSource",
    "discover_inputs",
    "find_inputs",
    "load_image",
]
