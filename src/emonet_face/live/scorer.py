"""Scoring a live stream: the newest frame wins, so the scores keep up instead of falling behind.

A stream (a webcam, an RTSP camera, a video played at its own speed, a browser sending frames over
a WebSocket) delivers frames faster than a CPU scores them. Queuing them all would make each
answer later than the one before; here, while one frame is being scored, each new frame replaces
the one waiting (:class:`NewestFrame`), and a replaced frame is *skipped*: it gets no row. Answers
therefore come in increasing frame order, each about one scoring time after its frame arrived.

:class:`FrameScorer` holds what lives as long as one stream: the face expansion stage and a
:class:`~emonet_face.tracking.FaceTracker`, so a person keeps one ``track`` id while they stay in
view. Its rows are the rows ``predict`` writes for a video (``path``, ``frame``, ``time``, the face
columns, ``track``, the scores), built by the same stages. The encoder call is left to the caller:
:func:`encode_and_score` in this thread (``emonet-face live``), or the HTTP server's batcher, which
encodes the frames of several streams in one batch (``/v1/stream``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from emonet_face.errors import InputError, error_text
from emonet_face.faces import FaceMode
from emonet_face.inputs.images import MAX_IMAGE_PIXELS, load_image
from emonet_face.media import Expand, FaceExpander, Item, MediaSource
from emonet_face.options import FaceOptions, check_fps
from emonet_face.outputs import keep_errors
from emonet_face.pipeline import EmoNetFace, Scored
from emonet_face.pipeline.refs import array_image
from emonet_face.tracking import FaceTracker

__all__ = [
    "LIVE_MAX_MISSES",
    "Frame",
    "FrameScorer",
    "LiveStats",
    "NewestFrame",
    "encode_and_score",
    "live_tables",
]

LIVE_MAX_MISSES = 10
"""Scored frames a face may go undetected before its track ends (a blink, a turned head, a hand in
front of the face: at a few scored frames per second, about two to three seconds)."""



@dataclass
class Frame:
    """One frame of a stream, numbered from 0 in the order it arrived."""

    index: int
    time: float
    """Seconds since the stream started (a video file: the frame's time in the video)."""
    image: bytes | Image.Image | np.ndarray | None
    """An encoded image (JPEG, PNG…), a PIL image, or an ``H × W × 3`` uint8 RGB array."""
    error: str | None = None
    """Why this frame cannot be scored, found before decoding (too large, not binary)."""
    arrived: float = field(default_factory=monotonic)  # not time.monotonic: to mypy, `time` here is the field above
    """``time.monotonic()`` when the frame arrived (latency = reply time − this)."""


def encode_and_score(net: EmoNetFace, items: Sequence[Item]) -> list[Scored]:
    """Encoder + heads for ready items in one batch (the scorer's :meth:`~emonet_face.pipeline.Scorer.encode`)."""
    return net.scorer.encode(items)


class FrameScorer:
    """Frames of one stream → score tables, one per frame, with a ``track`` id per face.

    ``path`` fills the ``path`` column (the source's name). ``faces`` are ``predict``'s face options
    (:class:`~emonet_face.options.FaceOptions`, or just the mode); ``max_pixels`` refuses giant frames
    from their header, before decoding.
    """

    def __init__(
        self,
        net: EmoNetFace,
        *,
        path: str = "stream",
        faces: FaceOptions | FaceMode | str = FaceMode.auto,
        max_pixels: int = MAX_IMAGE_PIXELS,
        max_misses: int = LIVE_MAX_MISSES,
    ) -> None:
        self.net = net
        self.path = path
        self.options = faces if isinstance(faces, FaceOptions) else FaceOptions(faces)
        self.max_pixels = max_pixels
        self.source = MediaSource(video_columns=True, face_columns=self.options.finds_faces)
        self._expand: FaceExpander | None = None
        self.tracker = FaceTracker(max_misses=max_misses) if self.options.finds_faces else None

    @property
    def faces(self) -> FaceMode:
        return FaceMode(self.options.faces)

    def expander(self, detector: Any = None) -> Expand:
        """The face expansion stage; ``detector`` (a ready detector object) overrides this scorer's
        own, for callers that keep one detector per thread (the server's decode pool)."""
        if detector is not None:
            return FaceExpander.from_options(self.options, detector)
        if self._expand is None:
            self._expand = FaceExpander.from_options(self.options)
        return self._expand

    def ids(self, frame: Frame) -> dict[str, Any]:
        """The frame's identifier columns (``path``, ``frame``, ``time`` and the empty face columns)."""
        ids = {"path": self.path, "frame": frame.index, "time": round(frame.time, 3)}
        return self.source.plan(ids, None)[0][0]

    def prepare(self, frame: Frame, detector: Any = None) -> list[Item]:
        """Decode, find faces, crop and preprocess (the pipeline's stages 2–4); a frame that cannot be
        used becomes one error :class:`Item` (its message names the frame)."""
        ids = self.ids(frame)
        if frame.error:
            return [Item(ids, error=frame.error)]
        try:
            image = self._decode(frame)
        except InputError as exc:
            return [Item(ids, error=str(exc))]
        except Exception as exc:  # anything else wrong with one frame: its own error, the stream goes on
            return [Item(ids, error=error_text({"path": f"frame {frame.index}"}, exc))]
        return self.net.prepare(ids, image, source=self.source, expand=self.expander(detector))

    def table(self, items: Sequence[Item], results: Sequence[Scored]) -> pd.DataFrame:
        """The frame's score table from its items and the results of its ready items (in order), with
        ``track`` ids from this stream's tracker."""
        return self.net.scorer.table(items, results, annotate=self.tracker)

    def score(self, frame: Frame, encode: Callable[[list[Item]], Sequence[Scored]] | None = None) -> pd.DataFrame:
        """One frame's score table, in this thread (``encode`` defaults to :func:`encode_and_score`)."""
        items = self.prepare(frame)
        ready = [item for item in items if item.inputs is not None]
        results: Sequence[Scored]
        if encode is None:
            results = encode_and_score(self.net, ready) if ready else []
        else:
            results = encode(ready) if ready else []
        return self.table(items, results)

    def _decode(self, frame: Frame) -> Image.Image:
        data = frame.image
        if isinstance(data, Image.Image):
            return data if data.mode == "RGB" else data.convert("RGB")
        if isinstance(data, np.ndarray):
            return array_image(data, f"frame {frame.index}")
        if not data:
            raise InputError(f"frame {frame.index}: empty message; send each frame as one encoded JPEG or PNG")
        return load_image(bytes(data), max_pixels=self.max_pixels, name=f"frame {frame.index}")


class NewestFrame:
    """A one-frame mailbox between a reader and a scorer: :meth:`put` replaces the frame waiting
    (the replaced one is skipped), :meth:`take` waits for the newest. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self.received = 0
        self.skipped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.skipped += 1
            self._frame = frame
            self.received += 1
            self._cond.notify()

    def close(self) -> None:
        """No more frames: :meth:`take` returns the last one waiting, then ``None``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> Frame | None:
        """The newest frame, waiting up to ``timeout`` s for one; ``None`` on timeout or once closed and empty."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame


@dataclass
class LiveStats:
    """What a live run has done so far (for a status line, a benchmark, a test)."""

    received: int = 0
    scored: int = 0
    skipped: int = 0
    """Frames received and not scored; once the run ends, ``scored + skipped == received``."""
    rows: int = 0
    errors: int = 0
    """Rows with an ``error`` (a frame that cannot be scored, a video file that ends early)."""
    first_errors: list[str] = field(default_factory=list)
    """Their first messages (:data:`~emonet_face.outputs.ERRORS_SHOWN`), for a summary."""
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    """Seconds from a frame's arrival to its table (the last 10,000 scored frames)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def scored_per_second(self) -> float:
        return self.scored / max(time.monotonic() - self.started, 1e-9)

    @property
    def latency_p50_ms(self) -> float:
        """The median of :attr:`latencies` in milliseconds (NaN before the first scored frame)."""
        latency = sorted(self.latencies)
        return latency[len(latency) // 2] * 1000 if latency else float("nan")


def live_tables(
    frames: Iterable[Frame],
    scorer: FrameScorer,
    *,
    stop: threading.Event | None = None,
    max_seconds: float | None = None,
    stats: LiveStats | None = None,
    encode: Callable[[list[Item]], Sequence[Scored]] | None = None,
    fps: float | None = None,
) -> Iterator[pd.DataFrame]:
    """Score a stream as it happens: one table per scored frame, newest frame first.

    ``frames`` is read in a background thread at its own pace (a camera's rate; a video file
    paced to its timestamps, see :func:`emonet_face.live.sources.open_source`); frames that
    arrive while one is being scored replace each other and are skipped. Ends when ``frames``
    ends (after scoring the last frame waiting), when ``stop`` is set, or after ``max_seconds``.
    ``fps`` scores at most that many frames per second (the newest one at each slot). The reader's
    exception, if any, is raised here once the frames before it are scored.
    """
    if fps is not None:
        check_fps(fps)
    stop = stop or threading.Event()
    stats = stats if stats is not None else LiveStats()
    mailbox = NewestFrame()
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for frame in frames:
                if stop.is_set():
                    break
                mailbox.put(frame)
            close = getattr(frames, "close", None)
            if close is not None:  # a generator: release its camera or file now, in this thread
                close()
        except BaseException as exc:  # handed to the consumer, which raises it
            failure.append(exc)
        finally:
            mailbox.close()

    reader = threading.Thread(target=read, name="emonet-face-live-reader", daemon=True)
    deadline = None if max_seconds is None else stats.started + max_seconds
    next_slot = -math.inf
    reader.start()
    try:
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now < next_slot:  # --fps: frames arriving meanwhile replace each other in the mailbox
                stop.wait(min(next_slot - now, 0.1))
                continue
            wait = 0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
            frame = mailbox.take(timeout=wait)
            if frame is None:
                if not reader.is_alive():
                    break
                continue
            if fps is not None:
                next_slot = time.monotonic() + 1.0 / fps
            table = scorer.score(frame, encode)
            stats.scored += 1
            stats.rows += len(table)
            stats.errors += keep_errors(stats.first_errors, table)
            stats.latencies.append(time.monotonic() - frame.arrived)
            stats.received, stats.skipped = mailbox.received, mailbox.skipped
            yield table
        if failure:
            raise failure[0]
    finally:
        stop.set()
        reader.join(timeout=5)
        # every frame read and not scored is skipped: replaced while one was scored, left waiting when
        # the run ended (a frame the mailbox's own count misses), or dropped by a second Ctrl-C
        stats.received = mailbox.received
        stats.skipped = stats.received - stats.scored
