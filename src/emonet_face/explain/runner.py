"""Explaining pictures: inputs → decoded pictures → crops → scores and maps, one
:class:`~emonet_face.explain.ExplainedImage` per picture (what ``emonet-face explain`` draws and
:meth:`EmoNetFace.explain <emonet_face.pipeline.EmoNetFace.explain>` tabulates).

Runs in the calling process: forward and backward passes, not decoding, take the time. A bad input
or picture becomes an error row for it, never the end of the run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from PIL import Image

from emonet_face.errors import InputError, error_text
from emonet_face.explain.methods import Explainer
from emonet_face.explain.table import ExplainedCrop, ExplainedImage, parse_emotions, ranked_emotions

__all__ = ["explain_refs"]

Pairs = list[tuple[dict[str, Any], Image.Image | None]]


def explain_refs(
    refs: Sequence[tuple[dict[str, Any], Any]],
    *,
    source: Any,
    expand: Callable[[dict[str, Any], Image.Image], Pairs] | None,
    explainer: Explainer,
    keys: tuple[str, ...],
    emotions: str | Sequence[str] | None = None,
    top: int = 3,
    progress: bool | None = None,
) -> Iterator[ExplainedImage]:
    """Explain every picture of ``refs`` (``(ids, ref)`` as a source plans them): ``emotions`` for
    every crop, or each crop's ``top`` emotions as ``predict`` ranks them."""
    from tqdm.auto import tqdm

    if top < 1:
        raise InputError(f"--top {top}: must be at least 1")
    wanted = parse_emotions(emotions, keys) if emotions is not None else None
    planned = [p for ids, ref in refs for p in source.plan(ids, ref)]
    show = progress if progress is not None else sys.stderr.isatty()
    for ids, ref in tqdm(planned, disable=not show, unit="img", desc="explaining", dynamic_ncols=True):
        try:
            for sub_ids, image in source(ids, ref):
                yield _explain_picture(explainer, sub_ids, image, expand, keys, wanted, top)
        except Exception as exc:  # a bad input is an error row, never the end of the run
            yield _failed(ids, error_text(ids, exc), explainer.method)


def _explain_picture(
    explainer: Explainer,
    ids: dict[str, Any],
    image: Image.Image | Exception,
    expand: Callable[[dict[str, Any], Image.Image], Pairs] | None,
    keys: tuple[str, ...],
    wanted: list[str] | None,
    top: int,
) -> ExplainedImage:
    if isinstance(image, Exception):  # the source could not decode this picture
        return _failed(ids, error_text(ids, image), explainer.method)
    try:
        pairs: Pairs = expand(ids, image) if expand else [(ids, image)]
    except Exception as exc:
        return _failed(ids, error_text(ids, exc), explainer.method)
    return _explain_crops(explainer, ids, image, pairs, keys, wanted, top)


def _failed(ids: dict[str, Any], error: str, method: str) -> ExplainedImage:
    return ExplainedImage(ids, None, [ExplainedCrop(ids, None, error=error)], method)


def _explain_crops(
    explainer: Explainer,
    ids: dict[str, Any],
    image: Image.Image,
    pairs: Pairs,
    keys: tuple[str, ...],
    wanted: list[str] | None,
    top: int,
) -> ExplainedImage:
    """All crops of one picture: scores (one batch, as ``predict`` gives them), then maps."""
    crops = [ExplainedCrop(row_ids, crop) for row_ids, crop in pairs]
    ready: list[tuple[ExplainedCrop, torch.Tensor]] = []
    for crop in crops:
        if crop.crop is None:
            continue
        try:
            ready.append((crop, explainer.encoder.preprocess([crop.crop])["pixel_values"]))
        except Exception as exc:
            crop.error = error_text(crop.ids, exc)
    if ready:
        pixels = torch.cat([p for _, p in ready])
        centred = explainer.centred_scores(pixels)
        for (crop, _), row in zip(ready, centred):
            crop.emotions = list(wanted) if wanted is not None else ranked_emotions(row, keys, top)
            crop.scores = [float(row[keys.index(k)]) for k in crop.emotions]
        targets = [[keys.index(k) for k in crop.emotions] for crop, _ in ready]
        for (crop, _), maps in zip(ready, explainer.explain(pixels, targets)):
            crop.maps = maps
    return ExplainedImage(ids, image, crops, explainer.method)
