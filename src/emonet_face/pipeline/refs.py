"""What a user hands :meth:`EmoNetFace.predict <emonet_face.pipeline.EmoNetFace.predict>` → refs.

Paths (files, folders, globs, brace patterns, videos, shards), PIL images and numpy arrays (``H × W
× 3`` uint8 RGB, or ``N × H × W × 3`` for several) become ``(ids, ref)`` pairs: ``ids`` holds the
``path`` column, ``ref`` what a source decodes. Named files are kept even when missing or unreadable
(they become error rows); folders and patterns expand as the CLI expands them, and one that holds
no media file is named in a warning (an error when nothing at all is found).
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from emonet_face.errors import InputError
from emonet_face.inputs import IMAGE_SUFFIXES, SHARD_SUFFIXES, VIDEO_SUFFIXES, FoundInputs, find_inputs
from emonet_face.inputs.sources import Ids

__all__ = ["Ref", "array_image", "input_refs"]

Ref = tuple[Ids, Any]


def array_image(array: np.ndarray, name: str) -> Image.Image:
    """An ``H × W × 3`` uint8 RGB array as a PIL image; anything else is a one-line error naming it."""
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InputError(
            f"{name}: expected an H×W×3 uint8 RGB array, got shape {tuple(array.shape)} {array.dtype}; "
            "convert with np.asarray(pil_image.convert('RGB')) or cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)"
        )
    return Image.fromarray(array)


def _one(image: Any, index: int, found: FoundInputs) -> list[Ref]:
    if isinstance(image, Image.Image):
        name = getattr(image, "filename", "") or f"<image {index}>"
        return [({"path": str(name)}, image)]
    if isinstance(image, np.ndarray):
        if image.ndim == 4:  # a stack of frames
            return [({"path": f"<array {index}[{k}]>"}, array_image(a, f"array {index}[{k}]")) for k, a in enumerate(image)]
        return [({"path": f"<array {index}>"}, array_image(image, f"array {index}"))]
    if not isinstance(image, (str, Path)):
        raise InputError(
            f"input {index}: {type(image).__name__} is not an image; pass paths, PIL images or H×W×3 uint8 arrays"
        )
    text = str(image)
    path = Path(text).expanduser()
    if path.is_dir() or (not path.exists() and (glob.has_magic(text) or "{" in text)):
        expanded = find_inputs([text])
        found.empty += expanded.empty
        found.missing += expanded.missing
        found.files += expanded.files
        return [({"path": str(p)}, p) for p in expanded.files]
    found.files.append(path)  # a named file is kept: missing or unreadable ones become error rows
    return [({"path": str(path)}, path)]


def input_refs(images: Any) -> list[Ref]:
    """Paths, PIL images and arrays (one, or any iterable of them) → ``(ids, ref)`` in input order.

    A folder or pattern without media files among other inputs is named in a warning; when nothing
    at all is found, an :class:`InputError` says so (as ``emonet-face predict`` does)."""
    if isinstance(images, (str, Path, Image.Image, np.ndarray)):
        images = [images]
    if not isinstance(images, Iterable):
        raise InputError(f"{type(images).__name__} is not an input; pass paths, PIL images or H×W×3 uint8 arrays")
    images = list(images)
    found = FoundInputs()
    refs = [ref for index, image in enumerate(images) for ref in _one(image, index, found)]
    if found.empty or found.missing:
        paths = [i for i in images if isinstance(i, (str, Path))]
        found.report(paths, IMAGE_SUFFIXES | VIDEO_SUFFIXES | SHARD_SUFFIXES, others=len(refs) - len(found.files))
    return refs
