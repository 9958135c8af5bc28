"""The pipeline's stages for real photos and video, and the item type that flows through them.

:class:`~emonet_face.pipeline.EmoNetFace` runs a chain of small stages with explicit seams, so that
face detection and video frames plug in without touching the scoring code:

1. **plan** (main process): each input (a path or a PIL image) becomes one or more *refs*
   ``(ids, ref)``; ``ids`` is the dict of identifier columns (``{"path": ...}``).
2. **source** (DataLoader worker): a ref becomes ``(ids, PIL image)`` items: one for an image, one
   per sampled frame for a video (adding ``frame``/``time``), one per sample of a shard.
3. **expand** (optional): one decoded image becomes several ``(ids, crop)`` pairs (one per face,
   adding ``face``, ``box_x``…), or ``[(ids, None)]`` for "nothing to score".
4. **preprocess**: the encoder's own processor turns each crop into tensors (an :class:`Item`).

This module holds stages 2–4 and the :class:`Item`:

* :class:`MediaSource` (source stage): images as in :class:`~emonet_face.inputs.sources.ImageSource`;
  a video becomes segments of :data:`SEGMENT_SAMPLES` sampled frames (one worker item each, so memory
  stays bounded however long the video), each yielding ``(ids + frame/time, frame image)``; a
  WebDataset tar or Parquet image shard becomes segments of samples the same way
  (:mod:`emonet_face.inputs.shards`), each yielding ``(ids + key/json fields, image)``.
* :class:`FaceExpander` (expansion stage): one image → one square crop per detected face with the
  ``face``/``box_*``/``det_score``/``region``/``eye_*`` columns, following ``--faces``.
* :func:`prepare_ref`: stages 2–4 for one ref; a failure becomes an error :class:`Item` for that
  input, never the end of the batch.
* :func:`media_stages`: the source and expansion stages ``predict`` (and the server) use.

Every row of a run carries the same id columns (``path``, then ``key`` and the carried ``.json``
fields when any input is a shard, then ``frame``/``time`` when any input is a video, then the face
columns unless ``--faces none``), filled with empty values where they
do not apply, so that error rows and rows of still images line up with the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from emonet_face.errors import InputError, error_text
from emonet_face.faces import DEFAULT_MARGIN, FACE_COLUMNS, FaceMode, face_regions, get_detector
from emonet_face.inputs.images import ensure_min_size, load_image
from emonet_face.inputs.shards import (
    ParquetSegment,
    ShardFailure,
    TarSegment,
    is_shard,
    iter_segment,
    json_columns,
    plan_shard,
)
from emonet_face.inputs.sources import Ids, ImageSource
from emonet_face.inputs.video import DEFAULT_FPS, is_video, iter_video_frames, probe_video
from emonet_face.options import FaceOptions, MediaOptions
from emonet_face.outputs import row_key

__all__ = [
    "SEGMENT_SAMPLES",
    "VIDEO_COLUMNS",
    "Expand",
    "FaceExpander",
    "Item",
    "MediaSource",
    "VideoSegment",
    "error_text",
    "feature_matrix",
    "media_stages",
    "prepare_item",
    "prepare_ref",
]

Expand = Callable[[Ids, Image.Image], list[tuple[Ids, Image.Image | None]]]
"""Stage 3: one decoded image → ``[(ids, crop_or_None), ...]`` (e.g. one entry per detected face)."""
Preprocess = Callable[[Sequence[Image.Image]], dict[str, torch.Tensor]]
"""Stage 4: the encoder's own image processor (``encoder.preprocess``)."""

VIDEO_COLUMNS = ("frame", "time")
SEGMENT_SAMPLES = 16
"""Sampled frames per video work item: bounds memory per item (16 preprocessed frames, times the
faces in them) while each segment costs only one seek to its keyframe."""


# --- items and stages 2-4 ----------------------------------------------------------------------
@dataclass
class Item:
    """One row to score: its identifier columns and preprocessed tensors (batch dim 1), or why not."""

    ids: Ids
    inputs: dict[str, torch.Tensor] | None = None
    error: str | None = None
    starts_image: bool = True
    """False for the 2nd, 3rd… crop of one image: a batch is never cut between faces of one image."""
    image: Image.Image | None = None
    """The crop still to preprocess, when the preprocessing runs beside the encoder (Ray engine)."""


def prepare_ref(
    ids: Ids,
    ref: Any,
    source: ImageSource,
    preprocess: Preprocess | None,
    expand: Expand | None = None,
    skip: frozenset[tuple] | set[tuple] = frozenset(),
) -> list[Item]:
    """Stages 2–4 for one ref: decode, expand, preprocess (``preprocess=None``: keep the crop in
    :attr:`Item.image` for a later :meth:`Scorer.preprocess <emonet_face.pipeline.Scorer.preprocess>`)."""
    items: list[Item] = []
    try:
        for sub_ids, image in source(ids, ref):
            if skip and row_key(sub_ids) in skip:
                continue
            if isinstance(image, Exception):
                items.append(Item(sub_ids, error=error_text(sub_ids, image)))
                continue
            try:
                pairs = expand(sub_ids, image) if expand else [(sub_ids, image)]
            except Exception as exc:
                items.append(Item(sub_ids, error=error_text(sub_ids, exc)))
                continue
            for n, (row_ids, crop) in enumerate(pairs):
                items.append(prepare_item(row_ids, crop, preprocess))
                items[-1].starts_image = n == 0
    except Exception as exc:  # a bad input is an error row, never the end of the batch
        items.append(Item(ids, error=error_text(ids, exc)))
    return items


def prepare_item(ids: Ids, image: Image.Image | None, preprocess: Preprocess | None) -> Item:
    """Stage 4 for one crop: its tensors, the crop itself (``preprocess=None``), or its error."""
    if image is None:
        return Item(ids)
    if preprocess is None:
        return Item(ids, image=image)
    try:
        return Item(ids, inputs=preprocess([image]))
    except Exception as exc:
        return Item(ids, error=error_text(ids, exc))


def feature_matrix(features: Sequence[torch.Tensor | None]) -> np.ndarray:
    """Per-row image features ``(N, D)`` float32, NaN rows where nothing was scored."""
    present = [f for f in features if f is not None]
    dim = present[0].shape[-1] if present else 1
    matrix = np.full((len(features), dim), np.nan, dtype=np.float32)
    for i, feature in enumerate(features):
        if feature is not None:
            matrix[i] = feature.float().cpu().numpy()
    return matrix


# --- sources and expansion -----------------------------------------------------------------------
@dataclass(frozen=True)
class VideoSegment:
    """Grid times ``[start, end)`` of a video (``end=None``: to the end of the stream)."""

    path: Path
    start: int
    end: int | None


class MediaSource(ImageSource):
    """Still images and videos, with a fixed set of id columns on every row."""

    def __init__(
        self,
        *,
        fps: float = DEFAULT_FPS,
        max_frames: int | None = None,
        video_columns: bool = False,
        face_columns: bool = False,
        shard_columns: bool = False,
        json_map: dict[str, str] | None = None,
        image_column: str | None = None,
    ) -> None:
        """``shard_columns``: rows carry ``key`` (+ the ``json_map`` columns: json field → column,
        see :func:`~emonet_face.inputs.shards.json_columns`); ``image_column``: Parquet shards' image column."""
        self.fps = fps
        self.max_frames = max_frames
        self.video_columns = video_columns
        self.face_columns = face_columns
        self.json_map = dict(json_map or {}) if shard_columns else {}
        self.shard_columns = ("key", *self.json_map.values()) if shard_columns else ()
        self.image_column = image_column

    def _base_ids(self, ids: dict[str, Any]) -> dict[str, Any]:
        out = dict(ids)
        for column in (
            *self.shard_columns,
            *(VIDEO_COLUMNS if self.video_columns else ()),
            *(FACE_COLUMNS if self.face_columns else ()),
        ):
            out.setdefault(column, None)
        return out

    def plan(self, ids: dict[str, Any], ref: Any) -> list[tuple[dict[str, Any], Any]]:
        ids = self._base_ids(ids)
        if isinstance(ref, (str, Path)) and is_shard(ref):
            return [(ids, segment) for segment in plan_shard(ref, image_column=self.image_column)]
        if not isinstance(ref, (str, Path)) or not is_video(ref):
            return [(ids, ref)]
        try:
            info = probe_video(ref)
        except Exception:  # the worker reports the error row with its message
            return [(ids, VideoSegment(Path(ref), 0, None))]
        samples = None if info.duration is None else max(1, math.ceil(info.duration * self.fps - 1e-6))
        if self.max_frames is not None:
            samples = self.max_frames if samples is None else min(samples, self.max_frames)
        if samples is None:  # length unknown: one pass over the whole stream
            return [(ids, VideoSegment(Path(ref), 0, None))]
        bounded = self.max_frames is not None and samples == self.max_frames
        starts = range(0, samples, SEGMENT_SAMPLES)
        return [
            # the last segment runs to the end of the stream: headers can understate the duration
            (ids, VideoSegment(Path(ref), s, s + SEGMENT_SAMPLES if s + SEGMENT_SAMPLES < samples or bounded else None))
            for s in starts
        ]

    def __call__(self, ids: dict[str, Any], ref: Any):
        if isinstance(ref, (str, Path)) and is_shard(ref):  # not planned (a direct call): read it all
            for segment in plan_shard(ref, image_column=self.image_column):
                yield from self(ids, segment)
            return
        if isinstance(ref, (TarSegment, ParquetSegment, ShardFailure)):
            for sample_ids, data in iter_segment(ref, self.json_map):
                sample_ids = {**ids, **sample_ids}
                if isinstance(data, Exception):
                    yield sample_ids, data
                    continue
                try:
                    yield sample_ids, load_image(data, name=f"{ref.path}[{sample_ids['key']}]")
                except InputError as exc:  # one undecodable sample: its own error row
                    yield sample_ids, exc
            return
        if isinstance(ref, (str, Path)) and is_video(ref):
            ref = VideoSegment(Path(ref), 0, None)
        if not isinstance(ref, VideoSegment):
            yield from super().__call__(ids, ref)
            return
        for frame in iter_video_frames(
            ref.path, fps=self.fps, max_frames=self.max_frames, start_sample=ref.start, end_sample=ref.end
        ):
            yield {**ids, "frame": frame.frame, "time": frame.time}, frame.image


class FaceExpander:
    """Stage 3: one decoded image → ``[(ids, crop or None)]`` per ``--faces`` (see
    :func:`emonet_face.faces.face_regions`). Crops (and whole images) smaller than
    :data:`~emonet_face.inputs.images.MIN_IMAGE_SIDE` are upscaled.

    The detector is built lazily in each DataLoader worker (detectors hold native objects that do
    not pickle).
    """

    def __init__(
        self,
        mode: FaceMode | str = FaceMode.auto,
        detector: Any = None,
        margin: float = DEFAULT_MARGIN,
        *,
        min_score: float | None = None,
        align: bool = False,
    ):
        self.mode = FaceMode(mode)
        self.detector_spec = detector
        self.margin = margin
        self.align = align
        self.detector_options = {} if min_score is None else {"threshold": min_score}
        self._detector = None
        if self.mode is not FaceMode.none:
            self._detector = get_detector(detector, **self.detector_options)  # fail early (unknown name, weights)

    @classmethod
    def from_options(cls, options: FaceOptions, detector: Any = None) -> FaceExpander:
        """The stage for ``options``; ``detector`` (a ready detector) overrides ``options.detector``, for
        callers that keep one detector per thread (the server's decode pool)."""
        return cls(
            options.faces,
            detector if detector is not None else options.detector,
            options.margin,
            min_score=options.min_face_score,
            align=options.align,
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_detector": None}

    def __call__(self, ids: dict[str, Any], image: Image.Image) -> list[tuple[dict[str, Any], Image.Image | None]]:
        if self.mode is not FaceMode.none and self._detector is None:
            self._detector = get_detector(self.detector_spec, **self.detector_options)
        regions = face_regions(image, self._detector, self.mode, margin=self.margin, align=self.align)
        return [({**ids, **r.ids}, None if r.image is None else ensure_min_size(r.image)) for r in regions]


def media_stages(
    paths: Sequence[Any], faces: FaceOptions | None = None, media: MediaOptions | None = None
) -> tuple[MediaSource, FaceExpander]:
    """The source (images, video frames, shard samples) and face-expansion stages for a run over
    ``paths`` (refs that are not paths, e.g. PIL images, are ignored here): the one place that decides
    a run's id columns, so ``predict``, the Python API, the server and the Ray engine build equal rows."""
    faces = faces or FaceOptions()
    media = media or MediaOptions()
    files = [Path(p) for p in paths if isinstance(p, (str, Path))]
    shards = [p for p in files if is_shard(p)]
    source = MediaSource(
        fps=media.fps,
        max_frames=media.max_frames,
        video_columns=any(is_video(p) for p in files),
        face_columns=faces.finds_faces,
        shard_columns=bool(shards),
        json_map=json_columns(shards, reserved=(*VIDEO_COLUMNS, *FACE_COLUMNS)) if media.carry_json else None,
        image_column=media.image_column,
    )
    return source, FaceExpander.from_options(faces)
