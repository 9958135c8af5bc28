"""A live run: open a source, load the model, score frames as they come and write their rows.

``emonet-face live`` parses its options and calls :meth:`LiveRun.open` then :meth:`LiveRun.run`;
a notebook or a script can do the same (and watch each table through ``on_table``). The scoring is
:func:`~emonet_face.live.scorer.live_tables` (newest frame wins, one tracker per run); this module
adds what a run needs around it: the source opened first (a wrong one fails before the model
loads), rows written as they come (a Parquet output in one part file per :data:`PARQUET_FLUSH_S`
seconds), a clean end on Ctrl-C or SIGTERM, and the counts (:class:`~emonet_face.live.scorer.LiveStats`).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from emonet_face.errors import InputError
from emonet_face.faces import get_detector
from emonet_face.live.scorer import FrameScorer, LiveStats, live_tables
from emonet_face.live.sources import FrameSource, open_source
from emonet_face.options import FaceOptions, ModelOptions, check_fps
from emonet_face.outputs import check_output_suffix, open_writer
from emonet_face.pipeline import EmoNetFace
from emonet_face.runfolder import refuse_if_in_use

__all__ = ["PARQUET_FLUSH_S", "BufferedWriter", "LiveOptions", "LiveRun", "LiveSummary", "stop_on_signals"]

PARQUET_FLUSH_S = 2.0
"""A Parquet output gets one part file per this many seconds of rows (CSV/JSONL: every frame)."""
KEPT_HINT = "the rows written before it are kept"
"""The end of a write error's message (a live run is not resumed: the next one starts a new file)."""

OnTable = Callable[[pd.DataFrame, LiveStats], None]
"""Called with each frame's table (and the counts so far) once its rows are handed to the writer."""


@dataclass(frozen=True)
class LiveOptions:
    """Where a live run's rows go and when it ends (``--out``, ``--max-seconds``, ``--fps``)."""

    out: Path | None = None
    """Rows as they come: ``.csv``, ``.jsonl`` or ``.parquet``; ``None``: not saved."""
    max_seconds: float | None = None
    """Stop after this many seconds (``None``: when the source ends, or on Ctrl-C)."""
    fps: float | None = None
    """Score at most this many frames per second (``None``: as many as possible)."""

    def __post_init__(self) -> None:
        if self.fps is not None:
            check_fps(self.fps)
        if self.out is not None:
            object.__setattr__(self, "out", check_output_suffix(self.out))
            refuse_if_in_use(self.out)  # before the camera and the model open; the writer holds it
        if self.max_seconds is not None and self.max_seconds < 0:
            raise InputError(f"--max-seconds {self.max_seconds:g}: must be 0 or more")

    @property
    def flush_s(self) -> float:
        """Seconds of rows buffered per write: a Parquet part each, other formats every frame."""
        return PARQUET_FLUSH_S if self.out is not None and self.out.suffix.lower() == ".parquet" else 0.0


@dataclass
class LiveSummary:
    """How a run ended: its counts, the source's kind (``camera``, ``url``, ``file``), where the rows
    went, and whether a second Ctrl-C stopped it at once (every row already scored is still written)."""

    stats: LiveStats
    kind: str
    out: Path | None = None
    interrupted: bool = False


class BufferedWriter:
    """Writes each frame's rows at once, or every ``flush_s`` seconds (Parquet: one part file each)."""

    def __init__(self, writer: Any, flush_s: float) -> None:
        self.writer = writer
        self.flush_s = flush_s
        self.pending: list[pd.DataFrame] = []
        self.last = time.monotonic()

    def write(self, table: pd.DataFrame) -> None:
        if self.writer is None:
            return
        self.pending.append(table)
        if time.monotonic() - self.last >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write(pd.concat(self.pending, ignore_index=True) if len(self.pending) > 1 else self.pending[0])
            self.pending = []
        self.last = time.monotonic()

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.flush()
            finally:
                self.writer.close()


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): set ``stop`` (the frame being scored is finished, then the run
    ends). A second Ctrl-C: ``KeyboardInterrupt`` (stop now). Outside the main thread: nothing."""

    def first(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    if threading.current_thread() is not threading.main_thread():  # signals are the main thread's only
        yield
        return
    previous = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class LiveRun:
    """An opened source and a loaded model, ready to :meth:`run`."""

    frames: FrameSource
    net: EmoNetFace
    scorer: FrameScorer
    options: LiveOptions = field(default_factory=LiveOptions)

    @classmethod
    def open(
        cls, source: str, options: LiveOptions | None = None, *, model: ModelOptions | EmoNetFace, faces: FaceOptions
    ) -> LiveRun:
        """Open ``source`` (a camera index, a stream URL or a video file: :func:`~emonet_face.live.open_source`)
        and check the face detector before loading ``model`` (options, or a loaded model), so that a
        wrong source or detector fails in one line before the model loads."""
        frames = open_source(source)
        try:
            if faces.finds_faces:
                get_detector(faces.detector, **faces.detector_options)
            net = model if isinstance(model, EmoNetFace) else EmoNetFace.from_pretrained(options=model)
        except BaseException:
            frames.close()
            raise
        scorer = FrameScorer(net, path=frames.name, faces=faces)
        return cls(frames, net, scorer, options or LiveOptions())

    @property
    def keys(self) -> tuple[str, ...]:
        return self.net.keys

    def run(self, on_table: OnTable | None = None, *, stop: threading.Event | None = None) -> LiveSummary:
        """Score until the source ends, ``max_seconds`` pass, ``stop`` is set or Ctrl-C (first: the frame
        being scored is finished and written; second: stop at once, ``interrupted``). Every row scored
        is written and the output finalised, whatever ends the run; the source is closed."""
        stop = stop or threading.Event()
        summary = LiveSummary(LiveStats(), self.frames.kind, self.options.out)
        out = self.options.out
        writer = open_writer(out, metadata=self.net.describe(), then=KEPT_HINT) if out is not None else None
        buffered = BufferedWriter(writer, self.options.flush_s)
        tables = live_tables(
            self.frames, self.scorer, stop=stop, max_seconds=self.options.max_seconds, stats=summary.stats,
            fps=self.options.fps,
        )
        try:
            with stop_on_signals(stop):
                for table in tables:
                    buffered.write(table)
                    if on_table is not None:
                        on_table(table, summary.stats)
        except KeyboardInterrupt:  # a second Ctrl-C: the frame being scored is dropped
            summary.interrupted = True
        finally:
            buffered.close()  # every row scored so far is on disk, Parquet finalised, even after a second Ctrl-C
            self.frames.close()
        return summary
