"""Live scoring: a camera, a stream URL or a video played at its own speed, scored as it happens.

The newest frame wins (frames that arrive while one is scored replace each other and are skipped),
and each stream keeps a face tracker, so every face row carries a ``track`` id. ``emonet-face
live`` and the server's WebSocket ``/v1/stream`` are both built on :class:`FrameScorer`; the
command's run (source, model, rows written as they come, counts) is :class:`LiveRun`.
"""

from emonet_face.live.run import PARQUET_FLUSH_S, BufferedWriter, LiveOptions, LiveRun, LiveSummary, stop_on_signals
from emonet_face.live.scorer import (
    LIVE_MAX_MISSES,
    Frame,
    FrameScorer,
    LiveStats,
    NewestFrame,
    encode_and_score,
    live_tables,
)
from emonet_face.live.sources import FrameSource, open_source

__all__ = [
    "LIVE_MAX_MISSES",
    "PARQUET_FLUSH_S",
    "BufferedWriter",
    "Frame",
    "FrameScorer",
    "FrameSource",
    "LiveOptions",
    "LiveRun",
    "LiveStats",
    "LiveSummary",
    "NewestFrame",
    "encode_and_score",
    "live_tables",
    "open_source",
    "stop_on_signals",
]
