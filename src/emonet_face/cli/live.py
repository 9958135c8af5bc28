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
    ForcePrecisionOpt,
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
    force_precision: ForcePrecisionOpt = False,
    detector: DetectorOpt = None,
    min_face_score: MinFaceScoreOpt = None,
    align: AlignOpt = False,
    margin: MarginOpt = 0.4,
    quiet: QuietOpt = False,
) -> None:
    """Score a camera, stream or video live.

    Score a camera, a stream or a video as it happens: frames that cannot be scored in time are skipped.

    Each face gets a track id that follows the person. Ctrl-C ends the run cleanly.
    """
    with user_errors():
        from emonet_face.live import LiveOptions, LiveRun

        options = LiveOptions(out=out, max_seconds=max_seconds, fps=fps)
        model_opts = model_options(
            model=model, encoder=encoder, heads=heads, revision=revision, cache_dir=cache_dir, device=device,
            backend=backend, dtype=dtype, no_normalize=no_normalize, force_precision=force_precision,
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
    """The live table (:class:`emonet_face.live.board.LiveBoard`) in the terminal, refreshed as frames are scored."""

    def __init__(self, keys: tuple[str, ...], *, show: bool) -> None:
        from emonet_face.live.board import LiveBoard

        self.show = show
        self.board = LiveBoard(keys)
        self._live: Any = None

    def __enter__(self) -> _Board:
        if self.show:
            from rich.console import Console
            from rich.live import Live

            live = Live(self.board.render(None), console=Console(stderr=True), refresh_per_second=4, transient=False)
            self._live = live
            live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, table: pd.DataFrame, stats: LiveStats) -> None:
        if self.show:
            self.board.add(table)
            self._live.update(self.board.render(stats))


def _summary(summary: LiveSummary) -> None:
    stats = summary.stats
    where = f" -> {summary.out}" if summary.out is not None else " (no --out: rows not saved)"
    typer.echo(
        f"scored {stats.scored} frame(s) ({stats.rows} row(s)), skipped {stats.skipped} of {stats.received} "
        f"{'read' if summary.kind == 'file' else 'received'}; latency p50 {stats.latency_p50_ms:.0f} ms{where}",
        err=True,
    )
