"""The source stage for still images: an input reference → decoded RGB images.

A source has two steps: :meth:`ImageSource.plan` (main process) splits one input into references
that workers load independently, and :meth:`ImageSource.__call__` (a DataLoader worker) decodes a
reference into ``(ids, image)`` items. Video frames and shard samples extend it in
:class:`emonet_face.media.MediaSource`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from PIL import Image

from emonet_face.inputs.images import load_image

__all__ = ["Ids", "ImageSource"]

Ids = dict[str, Any]
"""An item's identifier columns, e.g. ``{"path": ...}`` (+ ``frame``/``time``, ``face``…)."""


class ImageSource:
    """Stages 1 and 2 for still images: one ref per input, decoded with :func:`load_image`.

    Subclass (e.g. a video source) and override :meth:`plan` and/or :meth:`__call__`; keep every
    item's id keys the same across a run (the first batch fixes the output columns).
    """

    def plan(self, ids: Ids, ref: Any) -> list[tuple[Ids, Any]]:
        """Main process: split one input into refs that workers load independently."""
        return [(ids, ref)]

    def __call__(self, ids: Ids, ref: Any) -> Iterable[tuple[Ids, Image.Image | Exception]]:
        """Worker: decode a ref into ``(ids, RGB image)`` items. An item that fails on its own (one
        bad sample of a shard) is yielded with the exception in place of the image: it becomes an
        error row and the ref goes on."""
        if isinstance(ref, Image.Image):
            yield ids, ref if ref.mode == "RGB" else ref.convert("RGB")
        else:
            yield ids, load_image(ref)
