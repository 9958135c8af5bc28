"""Video frames as a stream: decode once, front to back, keep only the frames at the sampling
times. Memory holds one decoded frame at a time, whatever the video's length; no seeking."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from emonet_face.errors import InputError
from emonet_face.inputs.discovery import VIDEO_SUFFIXES
from emonet_face.inputs.images import empty_file_error

__all__ = ["DEFAULT_FPS", "VideoFrame", "VideoInfo", "is_video", "iter_video_frames", "probe_video"]

DEFAULT_FPS = 1.0
"""Frames scored per second of video when ``--fps`` is not given: facial expressions change over
about a second, and one frame a second keeps long videos affordable."""
ENDED_EARLY_SECONDS = 1.0
"""A stream that runs out more than this (or 3 frames, or 1 % of the length) before the end its
header gives ended early: an error row says so (a truncated download or copy)."""


@dataclass(frozen=True)
class VideoFrame:
    frame: int
    """0-based index of the frame in the decoded stream."""
    time: float
    """Presentation time in seconds from the start of the stream."""
    image: Image.Image


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    duration: float | None
    """Seconds, from the container header; ``None`` when the container does not say."""
    rate: float | None
    """Average frames per second of the stream."""


def probe_video(path: str | Path) -> VideoInfo:
    """Duration and frame rate from the header only (no decoding)."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream in this file")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            return VideoInfo(_header_duration(stream), float(rate) if rate else None)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise empty_file_error(path, path) or InputError(
            f"{path}: not a readable video ({exc}); re-encode it as MP4/H.264"
        ) from None


def iter_video_frames(
    path: str | Path,
    *,
    fps: float | None = DEFAULT_FPS,
    max_frames: int | None = None,
    start_sample: int = 0,
    end_sample: int | None = None,
) -> Iterator[VideoFrame]:
    """Yield RGB frames sampled on the time grid ``k / fps`` (the first frame at or after each
    grid time; a frame covering several grid times is yielded once); ``fps=None`` yields every
    frame. ``max_frames`` limits the work to the first ``max_frames`` grid times (with
    ``fps=None``: the first ``max_frames`` frames).

    ``start_sample``/``end_sample`` restrict to grid times ``[start, end)`` so that a long video
    can be cut into independent segments: the only seek is one jump to the keyframe before the
    segment; within it frames are decoded in order. Frame numbers are ``round(time × frame rate)``
    so that they agree between a whole-video pass and segments.

    Decoding uses PyAV (FFmpeg inside the wheel: mp4, mov, webm, avi, mkv …). A file that cannot
    be opened or decoded raises :class:`InputError` naming it.
    """
    import av

    path = Path(path)
    if fps is not None and fps <= 0:
        raise InputError(f"--fps {fps}: must be positive (frames per second to score)")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames {max_frames}: must be at least 1")
    step = None if fps is None else 1.0 / fps
    if step is not None and max_frames is not None:
        end_sample = max_frames if end_sample is None else min(end_sample, max_frames)
    try:
        container = av.open(str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise empty_file_error(path, path) or InputError(
            f"{path}: not a readable video ({exc}); re-encode it as MP4/H.264"
        ) from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream in this file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        begin = 0.0 if step is None else start_sample * step
        stop = None if step is None or end_sample is None else end_sample * step
        if begin > 0 and stream.time_base is not None:
            offset = int(begin / stream.time_base) + (stream.start_time or 0)
            with contextlib.suppress(av.FFmpegError):  # no seeking here (e.g. past a truncated end): decode
                container.seek(offset, stream=stream, backward=True, any_frame=False)  # from the start
        next_time = begin
        sampled = 0
        count = -1
        last = None
        try:
            for frame in container.decode(stream):
                count += 1
                time = _frame_time(frame, count, stream)
                last = time
                if time + 1e-6 < next_time:
                    continue
                if stop is not None and time + 1e-6 >= stop:
                    return
                index = round(time * float(rate)) if rate and frame.time is not None else count
                yield VideoFrame(index, round(time, 4), _frame_image(frame))
                sampled += 1
                if step is None:
                    if max_frames is not None and sampled >= max_frames:
                        return
                    continue
                # next grid time after this frame: skips over gaps, never drifts
                next_time = (int((time + 1e-6) / step) + 1) * step
        except av.FFmpegError as exc:
            near = next_time if last is None else last
            raise InputError(f"{path}: video is corrupt near {near:.1f}s ({exc}); re-encode it") from None
        if sampled or not begin:  # the segment where the stream ran out (later segments find no frame)
            _check_ended_early(path, stream, last)


def _check_ended_early(path: Path, stream, last: float | None) -> None:
    """The stream ran out: an :class:`InputError` (an error row after the frames already yielded)
    when that is well before the end the container's header gives (a truncated or damaged file);
    ``last`` is the last decoded frame's time."""
    duration = _header_duration(stream)
    if duration is None:
        return
    rate = stream.average_rate or stream.guessed_rate
    tolerance = max(ENDED_EARLY_SECONDS, 3 / float(rate) if rate else 0.0, duration / 100)
    if last is None:
        raise InputError(
            f"{path}: no frame could be decoded, though the header says {duration:.1f}s (a truncated or "
            "damaged file?); re-encode or copy it again"
        )
    if duration - last > tolerance:
        raise InputError(
            f"{path}: the video ended early, at {last:.1f}s of the {duration:.1f}s its header says (a truncated "
            f"or damaged file?): frames after {last:.1f}s are not scored; re-encode or copy it again"
        )


def _header_duration(stream) -> float | None:
    """The stream's duration in seconds from the container's header (``None`` when it does not say)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    container = stream.container
    return container.duration / 1_000_000 if container.duration is not None else None


def _frame_time(frame, index: int, stream) -> float:
    if frame.time is not None:
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        return max(0.0, float(frame.time) - start)
    rate = stream.average_rate or stream.guessed_rate
    return index / float(rate) if rate else float(index)


def _frame_image(frame) -> Image.Image:
    """RGB image with the container's rotation (phone videos) applied, like EXIF for photos."""
    image = frame.to_image()
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    if rotation:
        # FFmpeg's display matrix angle is counter-clockwise; PIL rotates counter-clockwise too.
        image = image.rotate(rotation, expand=True)
    return image.convert("RGB")
