"""`emonet-face live SOURCE`: a camera, a stream URL or a video file scored as it happens.

The run is :class:`emonet_face.live.LiveRun` (the source opened first, newest frame wins, one
tracker per run, rows written as they come); this module parses the options, draws the terminal
table and prints the summary.

Exit codes: 0 when the run ends (the source ended, ``--max-seconds``, Ctrl-C or SIGTERM: the frame
being scored is finished and written first), 1 when it ends but some rows have an ``error`` (a frame
that cannot be scored, a video file that ends early: named on stderr), 130 after a second Ctrl-C
(stops at once; every row already scored is written), 2 for a bad option, a source that does not
open or a model that does not load.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emonet_face.cli._common import EXIT_INTERRUPTED, EXIT_ROW_ERRORS, report_failures, user_errors
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
    LiveFpsOpt,
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

    from emonet_face.live import LiveStats, LiveSummary

TRACK_SHOWN_S = 10.0
"""Tracks unseen for this long leave the terminal table."""

SourceArg = Annotated[
    str,
    typer.Argument(
        help="A camera index (0), a stream URL OpenCV opens (rtsp://…, http://…), or a video file, played at "
        "its own speed."
    ),
]
RowsOutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Rows as they come: .csv, .jsonl or .parquet (time, frame, track, scores per face)."
    ),
]
MaxSecondsOpt = Annotated[float | None, typer.Option("--max-seconds", min=0.0, help="Stop after this many seconds.")]


def register(app: typer.Typer) -> None:
    app.command("live")(live)


def live(
    source: SourceArg,
    out: RowsOutOpt = None,
    max_seconds: MaxSecondsOpt = None,
    fps: LiveFpsOpt = None,
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
    with user_errors():
        from emonet_face.live import LiveOptions, LiveRun

        options = LiveOptions(out=out, max_seconds=max_seconds, fps=fps)
        model_opts = model_options(
            model=model, encoder=encoder, heads=heads, revision=revision, cache_dir=cache_dir, device=device,
            backend=backend, dtype=dtype, no_normalize=no_normalize,
        )
        face_opts = face_options(faces=faces, detector=detector, min_face_score=min_face_score, align=align, margin=margin)
        run = LiveRun.open(source, options, model=model_opts, faces=face_opts)  # a wrong source fails first
        with _Board(run.keys, show=not quiet and sys.stderr.isatty()) as board:
            summary = run.run(on_table=board.update)
    if not quiet:
        _summary(summary)
        report_failures(summary.stats.first_errors, summary.stats.errors, str(out) if out else "the rows scored")
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.stats.errors:
        raise typer.Exit(EXIT_ROW_ERRORS)


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
            caption = (
                f"frame {self.last_frame} · {stats.scored} scored ({stats.scored_per_second:.1f}/s) · "
                f"{stats.skipped} skipped · latency p50 {stats.latency_p50_ms:.0f} ms · Ctrl-C ends"
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


def _summary(summary: LiveSummary) -> None:
    stats = summary.stats
    where = f" -> {summary.out}" if summary.out is not None else " (no --out: rows not saved)"
    typer.echo(
        f"scored {stats.scored} frame(s) ({stats.rows} row(s)), skipped {stats.skipped} of {stats.received} "
        f"{'read' if summary.kind == 'file' else 'received'}; latency p50 {stats.latency_p50_ms:.0f} ms{where}",
        err=True,
    )
