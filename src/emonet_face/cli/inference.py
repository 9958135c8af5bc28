"""`emonet-face predict` (images → scores) and `emonet-face score` (cached embeddings → scores).

Exit codes: 0 all rows scored, 1 some rows have an ``error``, 2 usage or load error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from emonet_face.cli._common import EXIT_ROW_ERRORS, fail, progress_enabled, user_errors

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Released model (large, small) or an `emonet-face download` bundle folder.")
]
PredictModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Released model (large, small), a bundle folder written by `emonet-face download` (runs with no "
        "network), or a folder written by `emonet-face export` (one graph, run by ONNX Runtime or OpenVINO).",
    ),
]
BACKEND_HELP = (
    "Encoder backend: auto (PyTorch on CUDA, OpenVINO on CPU), torch, openvino or onnx (ONNX Runtime). "
    "Converted models are cached in $EMONET_FACE_CACHE or ~/.cache/emonet-face (first start converts, "
    "later starts reuse). Backend, precision and device are recorded in Parquet schema metadata."
)
BackendOpt = Annotated[str, typer.Option("--backend", help=BACKEND_HELP)]
DTYPE_HELP = (
    "Encoder precision: auto (bfloat16 on CPUs with AVX512_BF16/AMX and on bf16 GPUs, float32 elsewhere; "
    "ONNX Runtime float32), float32 (exact float32 on every backend), bfloat16, float16, or int8: EXPERIMENTAL, "
    "ONNX Runtime dynamic quantisation (auto backend -> onnx), never the default; its drift on the real weights "
    "is unmeasured."
)
DtypeOpt = Annotated[str, typer.Option("--dtype", help=DTYPE_HELP)]
DETECTOR_NAMES = "blazeface, dlib, haar, lbp, yunet"
"""Listed literally (building the registry at CLI import would load numpy and the hub client);
tests/test_faces.py checks that it names every registered detector."""
DetectorOpt = Annotated[
    str | None,
    typer.Option(
        "--detector",
        help=f"Face detector: {DETECTOR_NAMES} (default: blazeface, offline CNN shipped with the package); "
        "yunet:/path/model.onnx or blazeface:/path/model.tflite for a local weights file.",
    ),
]
MinFaceScoreOpt = Annotated[
    float | None,
    typer.Option(
        "--min-face-score",
        help="Keep faces the detector scores at least this (default: the detector's own threshold; "
        "blazeface: 0.5 on 0..1). Lower finds more faces, higher makes fewer mistakes.",
    ),
]
AlignOpt = Annotated[
    bool,
    typer.Option("--align", help="Rotate each face crop so the eyes are level (detectors with eye landmarks)."),
]
MarginOpt = Annotated[
    float, typer.Option("--margin", min=0.0, help="Context around each face, as a fraction of its box side.")
]
EncoderOpt = Annotated[
    str | None, typer.Option("--encoder", help="Encoder: Hub id (owner/name, or owner/name@rev) or local folder.")
]
HeadsOpt = Annotated[
    str | None,
    typer.Option(
        "--heads", help="Heads: Hub id (owner/name, or owner/name@rev) or local folder; default: the --model heads."
    ),
]
RevisionOpt = Annotated[str | None, typer.Option("--revision", help="Hub revision (branch, tag, commit) of the heads.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Hugging Face cache folder.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N (default: cuda if available).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
ImageColumnOpt = Annotated[
    str | None,
    typer.Option("--image-column", help="Parquet shards: the image column (default: the only binary/image column)."),
]
CarryJsonOpt = Annotated[
    bool, typer.Option("--carry-json/--no-carry-json", help="Tar shards: carry the scalar .json fields as columns.")
]
EngineOpt = Annotated[
    str, typer.Option("--engine", help="local (this process) or ray (Ray Data; --out is then a folder of parts).")
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option("--ray-address", help="Ray cluster: auto (join the running one) or ray://host:port; default: local."),
]
ActorsOpt = Annotated[int, typer.Option("--actors", min=1, help="Ray: encoder actors (one model load each).")]
GpusPerActorOpt = Annotated[float, typer.Option("--gpus-per-actor", min=0.0, help="Ray: GPUs per encoder actor.")]
CpusPerActorOpt = Annotated[
    float,
    typer.Option("--cpus-per-actor", min=0.0, help="Ray: CPUs per encoder actor (its preprocessing threads)."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Output file: .csv, .parquet or .jsonl (default: a table on stdout)."),
]



def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command("predict")(predict)
    app.command("score")(score)


def predict(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image/video files, WebDataset .tar or Parquet image shards, folders (recursive), glob or "
            "brace patterns (shards/{00000..00099}.tar)."
        ),
    ],
    out: OutOpt = None,
    model: PredictModelOpt = "large",
    encoder: EncoderOpt = None,
    heads: HeadsOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per encoder batch.")] = 16,
    num_workers: Annotated[
        int | None, typer.Option("--num-workers", min=0, help="Image decoding workers (default: cores-1, max 4).")
    ] = None,
    device: DeviceOpt = None,
    backend: BackendOpt = "auto",
    dtype: DtypeOpt = "auto",
    no_normalize: Annotated[
        bool, typer.Option("--no-normalize", help="Do not L2-normalise image features (released usage normalises).")
    ] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Skip inputs already in --out and append the rest.")] = False,
    quiet: QuietOpt = False,
    faces: Annotated[
        str,
        typer.Option(
            "--faces",
            help="detect: one row per detected face; none: score whole images (pre-cropped faces, EmoNet-Face "
            "datasets); auto: detect, and score a face-less close-up portrait whole (region=whole_image).",
        ),
    ] = "auto",
    detector: DetectorOpt = None,
    min_face_score: MinFaceScoreOpt = None,
    align: AlignOpt = False,
    margin: MarginOpt = 0.4,
    fps: Annotated[
        float, typer.Option("--fps", help="Video: frames scored per second, any number > 0 (0.5: one frame every 2 s).")
    ] = 1.0,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Video: score at most this many frames per video.")
    ] = None,
    save_vis: Annotated[
        Path | None, typer.Option("--save-vis", help="Folder for PNG pictures: face boxes + top-3, bar charts.")
    ] = None,
    tracks_out: Annotated[
        Path | None,
        typer.Option(
            "--tracks-out",
            help="Video: one row per face track (.csv, .parquet or .jsonl): times, frames, mean scores, top-3.",
        ),
    ] = None,
    smooth: Annotated[
        float, typer.Option("--smooth", min=0.0, help="Video timelines (--save-vis): moving average over SECONDS.")
    ] = 0.0,
    image_column: ImageColumnOpt = None,
    carry_json: CarryJsonOpt = True,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = 1,
    gpus_per_actor: GpusPerActorOpt = 0.0,
    cpus_per_actor: CpusPerActorOpt = 1.0,
) -> None:
    """Score images and videos with the 40 EmoNet-Face emotions + 4 dimensions (one row per face)."""
    if dtype not in ("auto", "float32", "bfloat16", "float16", "int8"):
        fail(f"--dtype {dtype}: use auto, float32, bfloat16, float16 or int8 (experimental)")
    if resume and out is None:
        fail("--resume needs --out (the file to continue)")
    if faces not in ("detect", "none", "auto"):
        fail(f"--faces {faces}: use detect, none or auto")
    if not fps > 0:  # the help says "> 0"; a typer range would print [x>=0.0]
        fail(f"--fps {fps:g}: must be more than 0 (frames scored per second of video, e.g. 1 or 0.5)")
    if tracks_out is not None and faces == "none":
        fail("--tracks-out needs faces (--faces detect or auto): tracks follow detected faces")
    check_engine(engine, out)
    if engine == "ray" and (save_vis is not None or tracks_out is not None):
        fail("--save-vis and --tracks-out work with --engine local only")
    with user_errors():
        from emonet_face.inputs import discover_inputs
        from emonet_face.media import media_stages
        from emonet_face.outputs import done_keys, open_writer
        from emonet_face.pipeline import EmoNetFace
        from emonet_face.runtime import quiet_transformers

        quiet_transformers()
        paths = discover_inputs(inputs)
        model_kwargs = {
            "model": model,
            "encoder": encoder,
            "heads": heads,
            "revision": revision,
            "cache_dir": cache_dir,
            "device": device,
            "dtype": None if dtype == "auto" else dtype,
            "normalize": not no_normalize,
            "backend": backend,
        }
        source, expand = media_stages(
            paths,
            faces=faces,
            detector=detector,
            margin=margin,
            fps=fps,
            max_frames=max_frames,
            min_score=min_face_score,
            align=align,
            carry_json=carry_json,
            image_column=image_column,
        )
        if engine == "ray":
            from emonet_face.engines import RayOptions
            from emonet_face.engines.ray_engine import ray_predict

            options = RayOptions(ray_address, actors, gpus_per_actor, cpus_per_actor, batch_size=batch_size)
            manifest = ray_predict(
                paths,
                out,  # type: ignore[arg-type]
                model_kwargs=model_kwargs,
                source=source,
                expand=expand,
                options=options,
                resume=resume,
                progress=progress_enabled(quiet),
            )
            _finish(manifest["count"], manifest["errors"], out, quiet)
            return
        for target in (out, tracks_out):
            if target is not None:
                _check_suffix(target)
        skip = done_keys(out) if resume and out is not None else set()
        net = EmoNetFace.from_pretrained(**model_kwargs)
        tracker, summary = _tracking(paths, faces, out if resume else None, net.keys, tracks_out is not None)
        batches = net.predict_batches(
            paths,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress_enabled(quiet),
            skip=skip,
            source=source,
            expand=expand,
            annotate=tracker,
        )
        if summary is not None:
            batches = _summarised(batches, summary)
        pictures = None
        if save_vis is not None:
            from emonet_face.viz import PictureWriter

            pictures = PictureWriter(save_vis, load=_load_still, smooth=smooth)
            batches = pictures.follow(batches)
        n_rows = n_errors = 0
        if out is None:
            import pandas as pd

            frames = list(batches)
            table = pd.concat(frames, ignore_index=True) if frames else None
            if table is not None:
                _print_table(table)
                n_rows, n_errors = len(table), int(table["error"].notna().sum())
        else:
            with open_writer(out, resume=resume, metadata=net.describe()) as writer:
                for frame in batches:
                    writer.write(frame)
                    n_rows += len(frame)
                    n_errors += int(frame["error"].notna().sum())
        if pictures is not None:
            pictures.finish()
        if summary is not None and tracks_out is not None:
            from emonet_face.outputs import write_table

            write_table(summary.table(), tracks_out)
    _finish(n_rows, n_errors, out, quiet, skipped=len(skip))


def check_engine(engine: str, out: Path | None) -> None:
    """``--engine`` is local or ray; ray writes a folder, so it needs ``--out``."""
    if engine not in ("local", "ray"):
        fail(f"--engine {engine}: use local or ray")
    if engine == "ray" and out is None:
        fail("--engine ray needs --out (a folder for the Parquet part files)")


def _tracking(paths: list[Path], faces: str, resumed: Path | None, keys: tuple[str, ...], want_summary: bool):
    """The video face tracker (``track`` column) and the ``--tracks-out`` summary, when they apply.

    On ``--resume`` new ids start above those already in the output, and the summary starts from
    the rows already written (tracks are not linked across the resume point).
    """
    from emonet_face.inputs.video import is_video
    from emonet_face.tracking import FaceTracker, TrackSummary

    if faces == "none" or not any(is_video(p) for p in paths):
        return None, (TrackSummary(keys) if want_summary else None)
    first_ids: dict[str, int] = {}
    summary = TrackSummary(keys) if want_summary else None
    if resumed is not None and resumed.exists():
        import pandas as pd

        from emonet_face.outputs import read_table

        done = read_table(resumed)
        if "track" in done.columns:
            tracks = pd.to_numeric(done["track"], errors="coerce")
            first_ids = {str(p): int(t) + 1 for p, t in tracks.groupby(done["path"]).max().dropna().items()}
            if summary is not None:
                summary.add(done)
    return FaceTracker(first_ids=first_ids), summary


def _summarised(batches, summary):
    for batch in batches:
        summary.add(batch)
        yield batch


def _load_still(path: str):
    from emonet_face.inputs import load_image

    return load_image(path)


def score(
    embeddings: Annotated[
        Path,
        typer.Argument(
            help=".npy array (N×D), Parquet with an 'embedding' list column (+ id columns), or an embedding store folder."
        ),
    ],
    heads: HeadsOpt = None,
    model: ModelOpt = "large",
    out: OutOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Score cached image embeddings with the heads only (no encoder is loaded)."""
    with user_errors():
        from emonet_face.outputs import write_table
        from emonet_face.pipeline import EmoNetFace

        if out is not None:
            _check_suffix(out)
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


def _check_suffix(out: Path) -> None:
    from emonet_face.errors import InputError
    from emonet_face.outputs import OUTPUT_SUFFIXES

    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"{out}: unknown output format {out.suffix!r}; use one of {', '.join(OUTPUT_SUFFIXES)}")


def _print_table(table: pd.DataFrame) -> None:
    """A compact rich table: ids, top-3 emotions with probabilities, the extra dimensions, errors."""
    import math

    from rich.console import Console
    from rich.table import Table

    from emonet_face.outputs import summary_columns

    view = Table(show_lines=False)
    columns = [c for c in summary_columns(table) if c in table.columns]
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in table.to_dict("records"):
        cells = []
        for column in columns:
            value = row.get(column)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("")
            elif column.startswith("top") and f"prob.{value}" in row:
                cells.append(f"{value} ({row[f'prob.{value}']:.2f})")
            elif isinstance(value, float):
                cells.append(f"{value:+.3f}")
            else:
                cells.append(str(value))
        view.add_row(*cells)
    console = Console(soft_wrap=False)
    if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        console = Console(soft_wrap=False, width=220)
    console.print(view)


def _finish(n_rows: int, n_errors: int, out: Path | None, quiet: bool, skipped: int = 0) -> None:
    if not quiet:
        where = f" -> {out}" if out is not None else ""
        extra = f", {skipped} already done (skipped)" if skipped else ""
        typer.echo(f"scored {n_rows - n_errors} row(s), {n_errors} error(s){extra}{where}", err=True)
    if n_errors:
        raise typer.Exit(EXIT_ROW_ERRORS)
