"""Runs the library drives: score tables batch by batch → face tracks → pictures → a written table,
with resume. ``emonet-face predict`` parses its options and calls :meth:`EmoNetFace.run
<emonet_face.pipeline.EmoNetFace.run>`; a notebook calls the same.

A run writes each batch as soon as it is scored (a killed run keeps its rows; ``resume=True``
skips inputs already in ``out`` and appends the rest), follows faces across video frames (a
``track`` column, and a per-track summary table in ``tracks_out``), and draws pictures
(``save_vis``: boxes + top-3 per photo, bar charts, video timelines).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from emonet_face.errors import InputError
from emonet_face.inputs import load_image
from emonet_face.inputs.video import is_video
from emonet_face.options import FaceOptions
from emonet_face.outputs import check_output_suffix, done_keys, keep_errors, open_writer, read_table, write_table
from emonet_face.pipeline.scorer import Annotate
from emonet_face.runfolder import refuse_if_in_use
from emonet_face.tracking import FaceTracker, TrackSummary
from emonet_face.viz import PictureWriter

__all__ = ["RunOptions", "RunSummary", "execute_run"]


@dataclass(frozen=True)
class RunOptions:
    """Where a run's results go (``--out``, ``--resume``, ``--tracks-out``, ``--save-vis``, ``--smooth``)."""

    out: Path | None = None
    """Score table: ``.csv``, ``.parquet`` or ``.jsonl``; ``None``: the table is returned only."""
    resume: bool = False
    tracks_out: Path | None = None
    save_vis: Path | None = None
    smooth: float = 0.0
    """Video timelines in ``save_vis``: moving average over this many seconds."""

    def __post_init__(self) -> None:
        for name in ("out", "tracks_out", "save_vis"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if self.resume and self.out is None:
            raise InputError("--resume needs --out (the file to continue)")
        for target in (self.out, self.tracks_out):
            if target is not None:
                check_output_suffix(target)
                refuse_if_in_use(target)  # before the model loads; the writer holds it from its first row
        if self.smooth < 0:
            raise InputError(f"--smooth {self.smooth:g}: must be 0 or more (seconds)")

    def check_faces(self, faces: FaceOptions) -> None:
        """Tracks follow detected faces: ``tracks_out`` with ``faces="none"`` is refused (before any work)."""
        if self.tracks_out is not None and not faces.finds_faces:
            raise InputError("--tracks-out needs faces (--faces detect or auto): tracks follow detected faces")


@dataclass
class RunSummary:
    """What a run did: rows scored, rows with an error (the first ones' messages), inputs skipped as
    already done, and the table (when the run kept it in memory: no ``out``)."""

    rows: int = 0
    errors: int = 0
    skipped: int = 0
    out: Path | None = None
    table: pd.DataFrame | None = field(default=None, repr=False)
    first_errors: list[str] = field(default_factory=list)
    """The ``error`` of the first failed rows (:data:`~emonet_face.outputs.ERRORS_SHOWN`; each names its
    input): what a summary names, the rest being in the output's ``error`` column."""

    @property
    def scored(self) -> int:
        return self.rows - self.errors


Batches = Callable[[set[tuple], Annotate | None], Iterator[pd.DataFrame]]
"""``(resume keys to skip, annotate)`` → score tables batch by batch (the model's ``predict_batches``)."""


def execute_run(
    batches: Batches, paths: Iterable[Any], run: RunOptions, *, keys: tuple[str, ...], faces: FaceOptions,
    metadata: dict[str, Any] | None = None,
) -> RunSummary:
    """Score, track, draw and write: the run behind :meth:`EmoNetFace.run <emonet_face.pipeline.EmoNetFace.run>`."""
    run.check_faces(faces)
    finds_faces = faces.finds_faces
    skip = done_keys(run.out) if run.resume and run.out is not None else set()
    tracker, summary = _tracking(paths, finds_faces, run, keys)
    stream = batches(skip, tracker)
    if summary is not None:
        stream = _summarised(stream, summary)
    pictures = PictureWriter(run.save_vis, load=load_image, smooth=run.smooth) if run.save_vis is not None else None
    if pictures is not None:
        stream = pictures.follow(stream)
    result = _write(stream, run, metadata)
    result.skipped = len(skip)
    if pictures is not None:
        pictures.finish()
    if summary is not None and run.tracks_out is not None:
        write_table(summary.table(), run.tracks_out)
    return result


def _write(stream: Iterable[pd.DataFrame], run: RunOptions, metadata: dict[str, Any] | None) -> RunSummary:
    """Append each batch to ``run.out`` as it comes; without ``out``, keep the table in memory."""
    result = RunSummary(out=run.out)
    if run.out is None:
        frames = [_counted(result, frame) for frame in stream]
        result.table = pd.concat(frames, ignore_index=True) if frames else None
        return result
    with open_writer(run.out, resume=run.resume, metadata=metadata) as writer:
        for frame in stream:
            writer.write(_counted(result, frame))
    return result


def _counted(result: RunSummary, frame: pd.DataFrame) -> pd.DataFrame:
    result.rows += len(frame)
    result.errors += keep_errors(result.first_errors, frame)
    return frame


def _tracking(
    paths: Iterable[Any], finds_faces: bool, run: RunOptions, keys: tuple[str, ...]
) -> tuple[FaceTracker | None, TrackSummary | None]:
    """The video face tracker (``track`` column) and the ``tracks_out`` summary, when they apply.

    On resume, new ids start above those already in the output, and the summary starts from the rows
    already written (tracks are not linked across the resume point).
    """
    summary = TrackSummary(keys) if run.tracks_out is not None else None
    videos = any(isinstance(p, (str, Path)) and is_video(p) for p in paths)
    if not finds_faces or not videos:
        return None, summary
    first_ids: dict[str, int] = {}
    if run.resume and run.out is not None and run.out.exists():
        done = read_table(run.out)
        if "track" in done.columns:
            tracks = pd.to_numeric(done["track"], errors="coerce")
            first_ids = {str(p): int(t) + 1 for p, t in tracks.groupby(done["path"]).max().dropna().items()}
            if summary is not None:
                summary.add(done)
    return FaceTracker(first_ids=first_ids), summary


def _summarised(batches: Iterable[pd.DataFrame], summary: TrackSummary) -> Iterator[pd.DataFrame]:
    for batch in batches:
        summary.add(batch)
        yield batch
