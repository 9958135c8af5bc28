"""`emonet-face predict` (images → scores) and `emonet-face score` (cached embeddings → scores).

Exit codes: 0 all rows scored, 1 some inputs failed (their rows have an ``error``, the first few
named on stderr), 2 the run could not start (usage or load error, no input exists).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from emonet_face.cli._common import EXIT_ROW_ERRORS, fail, progress_enabled, report_failures, user_errors
from emonet_face.cli.options import (
    ActorsOpt,
    AlignOpt,
    BackendOpt,
    BatchSizeOpt,
    CacheOpt,
    CarryJsonOpt,
    CpusPerActorOpt,
    DetectorOpt,
    DeviceOpt,
    DtypeOpt,
    EncoderOpt,
    EngineOpt,
    FacesOpt,
    ForcePrecisionOpt,
    FpsOpt,
    GpusPerActorOpt,
    HeadsOpt,
    ImageColumnOpt,
    InputsArg,
    MarginOpt,
    MaxFramesOpt,
    MinFaceScoreOpt,
    ModelOpt,
    NoNormalizeOpt,
    NumWorkersOpt,
    QuietOpt,
    RayAddressOpt,
    ResumeOpt,
    RevisionOpt,
    SmoothOpt,
    face_options,
    media_options,
    model_options,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from emonet_face.options import FaceOptions, MediaOptions, ModelOptions

OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Output file: .csv, .parquet or .jsonl (default: a table on stdout)."),
]
HeadsOnlyModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Released model (large, small) or an `emonet-face download` bundle folder.")
]
SaveVisOpt = Annotated[
    Path | None,
    typer.Option("--save-vis", help="Folder for PNG pictures: face boxes + top-3, bar charts, video timelines (--smooth)."),
]
TracksOutOpt = Annotated[
    Path | None,
    typer.Option(
        "--tracks-out",
        help="Video: one row per face track (.csv, .parquet or .jsonl): times, frames, mean scores, top-3.",
    ),
]


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command("predict")(predict)
    app.command("score")(score)


def predict(
    inputs: InputsArg,
    out: OutOpt = None,
    model: ModelOpt = "large",
    encoder: EncoderOpt = None,
    heads: HeadsOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
    batch_size: BatchSizeOpt = 16,
    num_workers: NumWorkersOpt = None,
    device: DeviceOpt = None,
    backend: BackendOpt = "auto",
    dtype: DtypeOpt = "auto",
    no_normalize: NoNormalizeOpt = False,
    force_precision: ForcePrecisionOpt = False,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
    faces: FacesOpt = "auto",
    detector: DetectorOpt = None,
    min_face_score: MinFaceScoreOpt = None,
    align: AlignOpt = False,
    margin: MarginOpt = 0.4,
    fps: FpsOpt = 1.0,
    max_frames: MaxFramesOpt = None,
    save_vis: SaveVisOpt = None,
    tracks_out: TracksOutOpt = None,
    smooth: SmoothOpt = 0.0,
    image_column: ImageColumnOpt = None,
    carry_json: CarryJsonOpt = True,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = 1,
    gpus_per_actor: GpusPerActorOpt = 0.0,
    cpus_per_actor: CpusPerActorOpt = 1.0,
) -> None:
    """Score the faces in images and videos.

    Score images and videos with the 40 EmoNet-Face emotions + 4 dimensions (one row per face)."""
    with user_errors():
        from emonet_face.inputs import discover_inputs
        from emonet_face.pipeline import RunOptions

        model_opts = model_options(
            model=model, encoder=encoder, heads=heads, revision=revision, cache_dir=cache_dir, device=device,
            backend=backend, dtype=dtype, no_normalize=no_normalize, force_precision=force_precision,
        )
        face_opts = face_options(faces=faces, detector=detector, min_face_score=min_face_score, align=align, margin=margin)
        media_opts = media_options(fps=fps, max_frames=max_frames, image_column=image_column, carry_json=carry_json)
        check_engine(engine, out)
        if engine == "ray":
            if save_vis is not None or tracks_out is not None:
                fail("--save-vis and --tracks-out work with --engine local only")
            ray = (ray_address, actors, gpus_per_actor, cpus_per_actor)
            rows, errors, first = _predict_ray(inputs, out, model_opts, face_opts, media_opts, ray, batch_size, resume, quiet)
            _finish(rows, errors, out, quiet, first_errors=first)
            return
        run = RunOptions(out=out, resume=resume, tracks_out=tracks_out, save_vis=save_vis, smooth=smooth)
        run.check_faces(face_opts)
        paths = discover_inputs(inputs)
        from emonet_face.pipeline import EmoNetFace

        net = EmoNetFace.from_pretrained(options=model_opts)
        summary = net.run(
            paths, run, faces=face_opts, media=media_opts, batch_size=batch_size, num_workers=num_workers,
            progress=progress_enabled(quiet),
        )
        if summary.table is not None:
            _print_table(summary.table)
    _finish(summary.rows, summary.errors, out, quiet, skipped=summary.skipped, first_errors=summary.first_errors)


def _predict_ray(
    inputs: list[str],
    out: Path | None,
    model: ModelOptions,
    faces: FaceOptions,
    media: MediaOptions,
    ray: tuple[str | None, int, float, float],
    batch_size: int,
    resume: bool,
    quiet: bool,
) -> tuple[int, int, list[str]]:
    """``--engine ray``: the same stages on Ray Data; returns (rows, errors, the first errors)."""
    from emonet_face.engines import RayOptions
    from emonet_face.engines.ray_engine import ray_predict
    from emonet_face.inputs import discover_inputs
    from emonet_face.media import media_stages
    from emonet_face.outputs import written_errors

    assert out is not None, "check_engine refuses --engine ray without --out"
    paths = discover_inputs(inputs)
    source, expand = media_stages(paths, faces, media)
    options = RayOptions(*ray, batch_size=batch_size)
    manifest = ray_predict(
        paths, out,
        model=model, source=source, expand=expand, options=options, resume=resume,
        progress=progress_enabled(quiet),
    )
    return manifest["count"], manifest["errors"], written_errors(out) if manifest["errors"] else []


def check_engine(engine: str, out: Path | None) -> None:
    """``--engine`` is local or ray; ray writes a folder, so it needs ``--out``."""
    from emonet_face.engines import ENGINES

    if engine not in ENGINES:
        fail(f"--engine {engine}: use {' or '.join(ENGINES)}")
    if engine == "ray" and out is None:
        fail("--engine ray needs --out (a folder for the Parquet part files)")


def score(
    embeddings: Annotated[
        Path,
        typer.Argument(
            help=".npy array (N×D), Parquet with an 'embedding' list column (+ id columns), or an embedding store folder."
        ),
    ],
    heads: HeadsOpt = None,
    model: HeadsOnlyModelOpt = "large",
    out: OutOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Score cached embeddings with the heads.

    Score cached image embeddings with the heads only (no encoder is loaded)."""
    with user_errors():
        from emonet_face.outputs import check_output_suffix, write_table
        from emonet_face.pipeline import EmoNetFace

        if out is not None:
            check_output_suffix(out)
        matrix, ids = load_embeddings(embeddings)
        net = EmoNetFace.from_pretrained(
            model, heads=heads, revision=revision, cache_dir=cache_dir, device=device, with_encoder=False
        )
        table = net.score(matrix, ids)
        if out is None:
            _print_table(table)
        else:
            write_table(table, out)
    _finish(len(table), 0, out, quiet)


def load_embeddings(path: Path) -> tuple[np.ndarray, pd.DataFrame | None]:
    """Read an embedding store (``emonet-face embed``), ``.npy`` (N×D) or Parquet with an
    ``embedding`` list column; other columns (for a store: ``id`` + metadata) become ids."""
    import numpy as np
    import pandas as pd

    from emonet_face.data.store import is_store, read_store
    from emonet_face.errors import InputError

    if is_store(path):
        return read_store(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass a .npy or .parquet embeddings file or an embedding store folder")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            matrix = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{path}: not a readable .npy array ({exc}); save embeddings with numpy.save") from None
        ids = None
    elif suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:
            raise InputError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
        if "embedding" not in frame.columns:
            raise InputError(f"{path}: no 'embedding' column (found {', '.join(map(str, frame.columns))})")
        try:
            matrix = np.stack([np.asarray(v, dtype=np.float32) for v in frame["embedding"]])
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path}: 'embedding' rows are not equal-length number lists ({exc})") from None
        ids = frame.drop(columns=["embedding"]).reset_index(drop=True)
        if not len(ids.columns):
            ids = None
    else:
        raise InputError(f"{path}: unknown embeddings format {suffix!r}; use .npy or .parquet")
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
        raise InputError(f"{path}: expected a 2-D numeric array (N×D), got shape {matrix.shape} {matrix.dtype}")
    return matrix.astype(np.float32, copy=False), ids


PLAIN_NUMBERS = {
    "box_x": "{:.0f}", "box_y": "{:.0f}", "box_w": "{:.0f}", "box_h": "{:.0f}", "det_score": "{:.2f}", "time": "{:.2f}"
}  # fmt: skip
"""Terminal formats of id columns that are measurements, not signed scores: boxes in whole pixels."""


def _print_table(table: pd.DataFrame) -> None:
    """A compact rich table: ids, top-3 emotions with probabilities, the extra dimensions, errors."""
    from rich.console import Console
    from rich.table import Table

    from emonet_face.outputs import summary_columns

    view = Table(show_lines=False)
    columns = [c for c in summary_columns(table) if c in table.columns]
    rows = [[_cell(column, row) for column in columns] for row in table.to_dict("records")]
    for i, column in enumerate(columns):
        longest = max((len(cells[i]) for cells in rows), default=0)  # paths whole where they fit: others fold
        view.add_column(column, overflow="fold", min_width=min(longest, 60) if column == "path" else None)
    for cells in rows:
        view.add_row(*cells)
    console = Console(soft_wrap=False)
    if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        console = Console(soft_wrap=False, width=220)
    console.print(view)


def _cell(column: str, row: dict) -> str:
    """One value as the terminal shows it: a top emotion with its probability, a box in whole pixels,
    a score with its sign."""
    import math

    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column.startswith("top") and f"prob.{value}" in row:
        return f"{value} ({row[f'prob.{value}']:.2f})"
    if column in PLAIN_NUMBERS and isinstance(value, (int, float)):
        return PLAIN_NUMBERS[column].format(value)
    if isinstance(value, float):
        return f"{value:+.3f}"
    return str(value)


def _finish(
    n_rows: int, n_errors: int, out: Path | None, quiet: bool, skipped: int = 0, first_errors: Sequence[str] = ()
) -> None:
    """The summary line and the inputs that failed (stderr), then exit 1 when any did."""
    if not quiet:
        where = f" -> {out}" if out is not None else ""
        extra = f", {skipped} already done (skipped)" if skipped else ""
        typer.echo(f"scored {n_rows - n_errors} row(s), {n_errors} error(s){extra}{where}", err=True)
        if n_errors:
            report_failures(first_errors, n_errors, str(out) if out is not None else "the table above")
    if n_errors:
        raise typer.Exit(EXIT_ROW_ERRORS)
