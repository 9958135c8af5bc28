"""Video frames as a stream: decode once, front to back, keep only the frames at the sampling
times. Memory holds one decoded frame at a time, whatever the video's length; no seeking."""

from __future__ import annotations

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
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            rate = stream.average_rate or stream.guessed_rate
            return VideoInfo(duration, float(rate) if rate else None)
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
            container.seek(offset, stream=stream, backward=True, any_frame=False)
        next_time = begin
        sampled = 0
        count = -1
        try:
            for frame in container.decode(stream):
                count += 1
                time = _frame_time(frame, count, stream)
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
            raise InputError(f"{path}: video is corrupt near {next_time:.1f}s ({exc}); re-encode it") from None


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
