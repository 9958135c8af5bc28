"""Video frames as a stream: decode once, front to back, keep only the frames at the sampling
times. Memory holds one decoded frame at a time, whatever the video's length; no seeking."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from emonet_face.errors import InputError
from emonet_face.inputs.discovery import VIDEO_SUFFIXES

__all__ = ["DEFAULT_FPS", "VideoFrame", "is_video", "iter_video_frames"]

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


def iter_video_frames(
    path: str | Path, *, fps: float | None = DEFAULT_FPS, max_frames: int | None = None
) -> Iterator[VideoFrame]:
    """Yield RGB frames sampled every ``1/fps`` seconds (the first frame at or after each sampling
    time); ``fps=None`` yields every frame. Stops after ``max_frames`` sampled frames.

    Decoding uses PyAV (FFmpeg inside the wheel: mp4, mov, webm, avi, mkv …). A file that cannot
    be opened or decoded raises :class:`InputError` naming it; frames yielded before a decoding
    error stay valid.
    """
    import av

    path = Path(path)
    if fps is not None and fps <= 0:
        raise InputError(f"--fps {fps}: must be positive (frames per second to score)")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames {max_frames}: must be at least 1")
    try:
        container = av.open(str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable video ({exc}); re-encode it as MP4/H.264") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream in this file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        step = None if fps is None else 1.0 / fps
        next_time = 0.0
        sampled = 0
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                time = _frame_time(frame, index, stream)
                if step is not None and time + 1e-6 < next_time:
                    continue
                yield VideoFrame(index, round(time, 4), _frame_image(frame))
                sampled += 1
                if max_frames is not None and sampled >= max_frames:
                    return
                if step is not None:
                    # next sampling time after this frame: skips ahead over gaps, never drifts
                    next_time += step * max(1, int((time - next_time) / step + 1e-9) + 1)
        except av.FFmpegError as exc:
            raise InputError(f"{path}: video is corrupt at frame {index} ({exc}); re-encode it") from None


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
