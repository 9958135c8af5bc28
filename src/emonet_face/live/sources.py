"""Where live frames come from: a camera, a stream URL, or a video file played at its own speed.

``SOURCE`` of ``emonet-face live`` is read as:

* a whole number (``0``, ``1``…): a camera index, opened with OpenCV (V4L2 on Linux);
* text with ``://`` (``rtsp://…``, ``http://…``): a network stream OpenCV opens (its FFmpeg);
* anything else: a video file, decoded with PyAV (as ``predict`` does) and **paced to its
  timestamps**, so it plays at its own speed and frames that cannot be scored in time are
  skipped, exactly as with a camera.

Cameras and URLs are read as fast as they deliver (draining the driver's buffer, so that the
newest frame is always the one scored); their ``time`` is seconds since the source was opened.
A file's ``time`` and ``frame`` are those of the video (the same numbers ``predict`` gives).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emonet_face.errors import InputError
from emonet_face.inputs.video import iter_video_frames, probe_video
from emonet_face.live.scorer import Frame

__all__ = ["FrameSource", "open_source"]

CAMERA_RETRIES = 50
"""Consecutive failed reads (about a second) before a camera counts as gone."""


@dataclass
class FrameSource:
    """An opened source: iterate it for :class:`~emonet_face.live.scorer.Frame` objects (RGB arrays)."""

    name: str
    """What the ``path`` column says: the SOURCE as given."""
    kind: str
    """``camera``, ``url`` or ``file``."""
    _capture: Any = None
    _path: Path | None = None
    realtime: bool = True

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "file":
            yield from self._file_frames()
        else:
            yield from self._capture_frames()

    def close(self) -> None:
        """Release the camera or stream (files are closed when their iteration ends)."""
        if self._capture is not None:
            self._capture.release()

    def _file_frames(self) -> Iterator[Frame]:
        """The file's frames at its own pace; a file that ends early or breaks midway ends with an
        error frame (one row saying so) after the frames that decoded."""
        assert self._path is not None
        start = first = None
        last: Frame | None = None
        try:
            for video_frame in iter_video_frames(self._path, fps=None):
                now = time.monotonic()
                if start is None:
                    start, first = now, video_frame.time
                elif self.realtime:
                    due = start + (video_frame.time - first)  # type: ignore[operator]
                    if due > now:
                        time.sleep(due - now)
                last = Frame(video_frame.frame, video_frame.time, video_frame.image)
                yield last
        except InputError as exc:
            if last is None:  # not one frame: the source cannot be used
                raise
            yield Frame(last.index + 1, last.time, None, error=str(exc))

    def _capture_frames(self) -> Iterator[Frame]:
        import cv2

        capture, start, index, failures = self._capture, time.monotonic(), 0, 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    failures += 1
                    if self.kind == "url" or failures >= CAMERA_RETRIES:  # a stream ended; a camera is gone
                        return
                    time.sleep(0.02)
                    continue
                failures = 0
                yield Frame(index, time.monotonic() - start, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
        finally:
            self.close()


def open_source(spec: str | int | Path, *, realtime: bool = True) -> FrameSource:
    """Open ``spec`` (a camera index, a stream URL or a video file; see the module doc) now, so that
    a wrong source fails before a model is loaded. ``realtime=False`` reads a file as fast as it
    decodes (no pacing). Raises :class:`InputError` with a one-line message."""
    text = str(spec).strip()
    if text.isdigit() or "://" in text:
        import cv2

        _quiet_opencv(cv2)
        kind = "camera" if text.isdigit() else "url"
        capture = cv2.VideoCapture(int(text)) if kind == "camera" else cv2.VideoCapture(text, cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            if kind == "camera":
                raise InputError(
                    f"camera {text}: could not be opened (no camera with that index, no permission, or another "
                    "program is using it); try another index, or give a video file or stream URL"
                )
            raise InputError(f"{text}: OpenCV could not open this stream; check the address and that it is streaming")
        return FrameSource(text, kind, _capture=capture, realtime=realtime)
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"{text}: no such file; give a video file, a camera index (0) or a stream URL (rtsp://…)")
    if path.is_dir():
        raise InputError(f"{text}: is a folder; give a video file, a camera index (0) or a stream URL")
    probe_video(path)  # not a readable video: a one-line InputError now
    return FrameSource(text, "file", _path=path, realtime=realtime)


def _quiet_opencv(cv2: Any) -> None:
    """OpenCV logs a warning per failed open; the one-line error above says it better."""
    with contextlib.suppress(AttributeError):  # builds without the logging module
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
