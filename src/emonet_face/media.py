"""Pipeline stages for real photos and video (the seams of :mod:`emonet_face.pipeline`):

* :class:`MediaSource` (source stage): images as before; a video becomes segments of
  :data:`SEGMENT_SAMPLES` sampled frames (one worker item each, so memory stays bounded however
  long the video), each yielding ``(ids + frame/time, frame image)``; a WebDataset tar or Parquet
  image shard becomes segments of samples the same way (:mod:`emonet_face.inputs.shards`), each
  yielding ``(ids + key/json fields, image)``.
* :class:`FaceExpander` (expansion stage): one image → one square crop per detected face with the
  ``face``/``box_*``/``det_score``/``region``/``eye_*`` columns, following ``--faces``.

Every row of a run carries the same id columns (``path``, then ``key`` and the carried ``.json``
fields when any input is a shard, then ``frame``/``time`` when any input is a video, then the face
columns unless ``--faces none``), filled with empty values where they
do not apply, so that error rows and rows of still images line up with the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from emonet_face.errors import InputError
from emonet_face.faces import DEFAULT_MARGIN, FaceMode, face_regions, get_detector
from emonet_face.faces.regions import FACE_COLUMNS
from emonet_face.inputs.images import ensure_min_size, load_image
from emonet_face.inputs.shards import ParquetSegment, ShardFailure, TarSegment, is_shard, iter_segment, plan_shard
from emonet_face.inputs.video import DEFAULT_FPS, is_video, iter_video_frames, probe_video
from emonet_face.pipeline import ImageSource

__all__ = ["SEGMENT_SAMPLES", "VIDEO_COLUMNS", "FaceExpander", "MediaSource", "VideoSegment"]

VIDEO_COLUMNS = ("frame", "time")
SEGMENT_SAMPLES = 16
"""Sampled frames per video work item: bounds memory per item (16 preprocessed frames, times the
faces in them) while each segment costs only one seek to its keyframe."""


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
        detector: str | None = None,
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

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_detector": None}

    def __call__(self, ids: dict[str, Any], image: Image.Image) -> list[tuple[dict[str, Any], Image.Image | None]]:
        if self.mode is not FaceMode.none and self._detector is None:
            self._detector = get_detector(self.detector_spec, **self.detector_options)
        regions = face_regions(image, self._detector, self.mode, margin=self.margin, align=self.align)
        return [({**ids, **r.ids}, None if r.image is None else ensure_min_size(r.image)) for r in regions]
