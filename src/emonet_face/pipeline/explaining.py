"""Explanation runs the library drives: inputs → faces → maps → ``OUT/explanations.parquet`` and
pictures. ``emonet-face explain`` parses its options and calls :func:`explain_run`; a notebook
calls the same (or :meth:`EmoNetFace.explain <emonet_face.pipeline.EmoNetFace.explain>` for a table
in memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from emonet_face.explain.runs import ExplainOptions, ExplainSummary, write_explanations
from emonet_face.options import FaceOptions, MediaOptions
from emonet_face.pipeline.model import EmoNetFace

__all__ = ["explain_run"]


def explain_run(
    net: EmoNetFace,
    paths: Sequence[str | Path],
    options: ExplainOptions,
    *,
    faces: FaceOptions | None = None,
    media: MediaOptions | None = None,
    progress: bool | None = None,
) -> ExplainSummary:
    """Explain every picture of ``paths`` (files as :func:`~emonet_face.inputs.discover_inputs` finds
    them: images, videos, shards) with ``net`` and write the maps (and pictures) into ``options.out``,
    part by part. ``faces`` / ``media``: how faces are found and videos and shards read (defaults:
    :class:`~emonet_face.options.FaceOptions`, :class:`~emonet_face.options.MediaOptions`).
    Returns the maps, errors and pictures written; a bad input is an error row, never the end of the run."""
    faces = faces or FaceOptions()
    explained = net.explain_images(paths, faces=faces, media=media, progress=progress, **options.explainer_options)
    return write_explanations(explained, options, metadata=net.describe(), margin=faces.margin, align=faces.align)
