"""`emonet-face live SOURCE`: a camera, a stream URL or a video file scored as it happens.

The scoring is :func:`emonet_face.live.live_tables` (newest frame wins, one tracker per run); this
module only opens the source, writes the rows and draws the terminal table.

Exit codes: 0 when the run ends (the source ended, ``--max-seconds``, Ctrl-C or SIGTERM: the frame
being scored is finished and written first), 130 after a second Ctrl-C (stops at once; every row
already scored is written), 2 for a bad option, a source that does not open or a model that does not
load.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emonet_face.cli._common import EXIT_INTERRUPTED, fail, user_errors
from emonet_face.cli.options import (
    AlignOpt,
    BackendOpt,
    CacheOpt,
    DetectorOpt,
    DeviceOpt,
    DtypeOpt,
    EncoderOpt,
    FacesOpt,
    HeadsOpt,
    MarginOpt,
    MinFaceScoreOpt,
    ModelOpt,
    NoNormalizeOpt,
    QuietOpt,
    RevisionOpt,
    face_options,
    model_options,
)

if TYPE_CHECKING:
    import pandas as pd

    from emonet_face.live import LiveStats

PARQUET_FLUSH_S = 2.0
"""A Parquet output gets one part file per this many seconds of rows (CSV/JSONL: every frame)."""
TRACK_SHOWN_S = 10.0
"""Tracks unseen for this long leave the terminal table."""


def register(app: typer.Typer) -> None:
    app.command("live")(live)


def live(
    source: Annotated[
        str,
        typer.Argument(
            help="A camera index (0), a stream URL OpenCV opens (rtsp://…, http://…), or a video file, played at "
            "its own speed."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Rows as they come: .csv, .jsonl or .parquet (time, frame, track, scores per face)."
        ),
    ] = None,
    max_seconds: Annotated[
        float | None, typer.Option("--max-seconds", min=0.0, help="Stop after this many seconds.")
    ] = None,
    fps: Annotated[
        float | None,
        typer.Option(
            "--fps", min=0.0, help="Score at most this many frames per second (default: as many as possible)."
        ),
    ] = None,
    faces: FacesOpt = "auto",
    model: ModelOpt = "large",
    encoder: EncoderOpt = None,
    heads: HeadsOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
    backend: BackendOpt = "auto",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    no_normalize: NoNormalizeOpt = False,
    detector: DetectorOpt = None,
    min_face_score: MinFaceScoreOpt = None,
    align: AlignOpt = False,
    margin: MarginOpt = 0.4,
    quiet: QuietOpt = False,
) -> None:
    """Score a camera, a stream or a video as it happens: frames that cannot be scored in time are skipped.

    Each face gets a track id that follows the person. Ctrl-C ends the run cleanly.
    """
    if fps is not None and fps <= 0:
        fail(f"--fps {fps:g}: must be more than 0 (frames scored per second of video, e.g. 1 or 0.5)")
    with user_errors():
        from emonet_face.live import FrameScorer, LiveStats, live_tables, open_source
        from emonet_face.outputs import OUTPUT_SUFFIXES, open_writer
        from emonet_face.pipeline import EmoNetFace

        model_opts = model_options(
            model=model, encoder=encoder, heads=heads, revision=revision, cache_dir=cache_dir, device=device,
            backend=backend, dtype=dtype, no_normalize=no_normalize,
        )
        face_opts = face_options(faces=faces, detector=detector, min_face_score=min_face_score, align=align, margin=margin)
        if out is not None and out.suffix.lower() not in OUTPUT_SUFFIXES:
            fail(f"{out}: unknown output format {out.suffix!r}; use one of {', '.join(OUTPUT_SUFFIXES)}")
        frames = open_source(source)  # a wrong source fails before the model loads
        if face_opts.finds_faces:
            from emonet_face.faces import get_detector

            get_detector(face_opts.detector, **face_opts.detector_options)
        net = EmoNetFace.from_pretrained(options=model_opts)
        scorer = FrameScorer(net, path=frames.name, faces=face_opts)
        stats = LiveStats()
        stop = threading.Event()
        board = _Board(net.keys, show=not quiet and sys.stderr.isatty())
        writer = open_writer(out, metadata=net.describe()) if out is not None else None
        buffered = _Buffered(writer, PARQUET_FLUSH_S if out is not None and out.suffix.lower() == ".parquet" else 0.0)
        interrupted = False
        try:
            with _stop_on_signals(stop), board:
                for table in live_tables(frames, scorer, stop=stop, max_seconds=max_seconds, stats=stats, fps=fps):
                    buffered.write(table)
                    board.update(table, stats)
        except KeyboardInterrupt:  # a second Ctrl-C: the frame being scored is dropped
            interrupted = True
        finally:
            buffered.close()  # every row scored so far is on disk, Parquet finalised, even after a second Ctrl-C
            frames.close()
        if not quiet:
            _summary(stats, out, frames.kind)
        if interrupted:
            raise typer.Exit(EXIT_INTERRUPTED)


class _Buffered:
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
            import pandas as pd

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
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): finish the frame being scored, then end. A second Ctrl-C: stop now."""

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


class _Board:
    """A small live table per track in the terminal (rich), refreshed as frames are scored."""

    def __init__(self, keys: tuple[str, ...], *, show: bool) -> None:
        from emonet_face import taxonomy as tx

        self.show = show
        self.dimensions = [k for k in tx.EXTRA_KEYS if k in keys]
        self.tracks: dict[Any, dict[str, Any]] = {}
        self.last_frame: int | None = None
        self._live: Any = None

    def __enter__(self) -> _Board:
        if self.show:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._render(None), console=Console(stderr=True), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, table: pd.DataFrame, stats: LiveStats) -> None:
        if not self.show:
            return
        now = time.monotonic()
        for row in table.to_dict("records"):
            if row.get("error") or row.get("top1") is None or row.get("top1") != row.get("top1"):
                continue
            key = row.get("track")
            key = "-" if key is None or key != key else int(key)
            entry = self.tracks.setdefault(key, {"frames": 0})
            entry.update(row=row, seen=now, frames=entry["frames"] + 1)
        self.tracks = {k: v for k, v in self.tracks.items() if now - v["seen"] <= TRACK_SHOWN_S}
        self.last_frame = int(table["frame"].iloc[0]) if len(table) else self.last_frame
        self._live.update(self._render(stats))

    def _render(self, stats: LiveStats | None) -> Any:
        from rich.table import Table

        caption = "waiting for the first frame…"
        if stats is not None:
            latency = sorted(stats.latencies)
            p50 = latency[len(latency) // 2] * 1000 if latency else float("nan")
            caption = (
                f"frame {self.last_frame} · {stats.scored} scored ({stats.scored_per_second:.1f}/s) · "
                f"{stats.skipped} skipped · latency p50 {p50:.0f} ms · Ctrl-C ends"
            )
        view = Table(title="emonet-face live", caption=caption, title_justify="left", caption_justify="left")
        for column in ("track", "time", "frames", "top 1", "top 2", "top 3", *self.dimensions):
            view.add_column(column.replace("emotional_", "emo. "), no_wrap=True)
        for track, entry in sorted(self.tracks.items(), key=lambda kv: str(kv[0])):
            row = entry["row"]
            tops = [
                f"{row[c]} {row.get(f'prob.{row[c]}', float('nan')):.0%}" if row.get(c) else ""
                for c in ("top1", "top2", "top3")
            ]
            dims = [f"{row.get(f'raw.{k}', float('nan')):+.2f}" for k in self.dimensions]
            view.add_row(str(track), f"{row.get('time', 0):.1f}s", str(entry["frames"]), *tops, *dims)
        return view


def _summary(stats: LiveStats, out: Path | None, kind: str) -> None:
    latency = sorted(stats.latencies)
    p50 = latency[len(latency) // 2] * 1000 if latency else float("nan")
    where = f" -> {out}" if out is not None else " (no --out: rows not saved)"
    typer.echo(
        f"scored {stats.scored} frame(s) ({stats.rows} row(s)), skipped {stats.skipped} of {stats.received} "
        f"{'read' if kind == 'file' else 'received'}; latency p50 {p50:.0f} ms{where}",
        err=True,
    )
