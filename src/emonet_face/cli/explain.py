"""`emonet-face explain`: which parts of each face drive its emotions (maps over the encoder's patches).

Writes ``OUT/explanations.parquet`` (one row per input, face and emotion; columns in
:mod:`emonet_face.explain.table`) and, unless ``--no-pictures``, ``OUT/pictures/``: per face and
emotion the map over the crop, per picture the top emotion's map inside each face's crop square.

Exit codes: 0 everything explained, 1 some inputs have an ``error``, 2 usage or load error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import EXIT_ROW_ERRORS, fail, progress_enabled, user_errors
from emonet_face.cli.options import (
    AlignOpt,
    BackendOpt,
    CacheOpt,
    CarryJsonOpt,
    DetectorOpt,
    DeviceOpt,
    DtypeOpt,
    EncoderOpt,
    HeadsOpt,
    ImageColumnOpt,
    MarginOpt,
    MinFaceScoreOpt,
    ModelOpt,
    QuietOpt,
    RevisionOpt,
    face_options,
    media_options,
    model_options,
)

METHOD_NAMES = "integrated-gradients (default), occlusion"
DEFAULT_STEPS = 2
"""Listed literally (importing the explain package at CLI import would load torch); tests check them."""
ROWS_PER_PART = 64
"""Rows per Parquet part written while the run goes on (a killed run keeps the parts)."""


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)


def explain(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image/video files, WebDataset .tar or Parquet image shards, folders, glob or brace patterns."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output folder: explanations.parquet and pictures/ go there."),
    ],
    emotions: Annotated[
        str | None,
        typer.Option(
            "--emotions",
            help="Explain these emotions for every face: head keys or names, comma-separated (bitterness,awe). "
            "Default: each face's --top emotions.",
        ),
    ] = None,
    top: Annotated[
        int,
        typer.Option("--top", min=1, help="Explain each face's K top emotions, ranked as predict ranks top1..top3."),
    ] = 3,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help=f"{METHOD_NAMES}. integrated-gradients runs the PyTorch encoder (loaded beside a compiled one), "
            "one forward and one backward pass per emotion per --steps; occlusion needs forward passes only "
            "(any backend), one per patch window (577 at 24x24 patches with --window 1).",
        ),
    ] = "integrated-gradients",
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Crops per forward pass (occluded copies, path points).")
    ] = 8,
    window: Annotated[int, typer.Option("--window", min=1, help="occlusion: window side in patches.")] = 1,
    stride: Annotated[
        int | None, typer.Option("--stride", min=1, help="occlusion: window step in patches (default: the window).")
    ] = None,
    steps: Annotated[
        int,
        typer.Option(
            "--steps",
            min=1,
            help="integrated-gradients: points on the path from grey to the crop; each costs one forward pass "
            "and one backward pass per emotion (2-core CPU, so400m: ~1.3 s each). 1 is twice as fast but missed "
            "the cue on a quarter of the pictures of some toy models; more is closer to the integral.",
        ),
    ] = DEFAULT_STEPS,
    pictures: Annotated[
        bool, typer.Option("--pictures/--no-pictures", help="Draw the maps as PNG pictures in OUT/pictures.")
    ] = True,
    model: ModelOpt = "large",
    encoder: EncoderOpt = None,
    heads: HeadsOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = None,
    backend: BackendOpt = "auto",
    dtype: DtypeOpt = "auto",
    no_normalize: Annotated[
        bool, typer.Option("--no-normalize", help="Do not L2-normalise image features (released usage normalises).")
    ] = False,
    faces: Annotated[
        str,
        typer.Option(
            "--faces",
            help="detect: explain each detected face; none: whole images (pre-cropped faces); auto: detect, and "
            "explain a face-less close-up portrait whole.",
        ),
    ] = "auto",
    detector: DetectorOpt = None,
    min_face_score: MinFaceScoreOpt = None,
    align: AlignOpt = False,
    margin: MarginOpt = 0.4,
    fps: Annotated[float, typer.Option("--fps", min=0.0, help="Video: frames explained per second.")] = 1.0,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Video: explain at most this many frames per video.")
    ] = None,
    image_column: ImageColumnOpt = None,
    carry_json: CarryJsonOpt = True,
    quiet: QuietOpt = False,
) -> None:
    """Explain which parts of each face raise or lower its emotions (maps over the encoder's patch grid)."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: is a file; give a folder for explanations.parquet and pictures/")
    with user_errors():
        from emonet_face.explain import METHODS
        from emonet_face.inputs import discover_inputs
        from emonet_face.media import media_stages
        from emonet_face.outputs import open_writer
        from emonet_face.pipeline import EmoNetFace
        from emonet_face.runtime import quiet_transformers

        if method not in METHODS:
            fail(f"--method {method}: use one of {', '.join(METHODS)}")
        quiet_transformers()
        paths = discover_inputs(inputs)
        faces_opts = face_options(faces=faces, detector=detector, min_face_score=min_face_score, align=align, margin=margin)
        media_opts = media_options(fps=fps, max_frames=max_frames, image_column=image_column, carry_json=carry_json)
        source, expand = media_stages(paths, faces_opts, media_opts)
        net = EmoNetFace.from_pretrained(
            options=model_options(
                model=model, encoder=encoder, heads=heads, revision=revision, cache_dir=cache_dir, device=device,
                backend=backend, dtype=dtype, no_normalize=no_normalize,
            )
        )
        writer_pictures = None
        if pictures:
            from emonet_face.explain.figures import MapPictureWriter

            writer_pictures = MapPictureWriter(out / "pictures", margin=margin, align=align)
        explained = net.explain_images(
            paths,
            emotions=emotions,
            top=top,
            method=method,
            batch_size=batch_size,
            source=source,
            expand=expand,
            progress=progress_enabled(quiet),
            window=window,
            stride=stride,
            steps=steps,
        )
        from emonet_face.explain import explanation_table

        settings = {"method": method, "emotions": emotions, "top": None if emotions else top}
        settings.update({"window": window, "stride": stride or window} if method == "occlusion" else {})
        settings.update({"steps": steps} if method == "integrated-gradients" else {})
        out.mkdir(parents=True, exist_ok=True)
        n_maps = n_errors = 0
        rows: list[dict] = []
        with open_writer(out / "explanations.parquet", metadata={**net.describe(), "explain": settings}) as writer:
            for image in explained:
                rows.extend(image.rows())
                if writer_pictures is not None:
                    writer_pictures.add(image)
                if len(rows) >= ROWS_PER_PART:
                    writer.write(explanation_table(rows))
                    rows = []
            if rows:
                writer.write(explanation_table(rows))
        if (out / "explanations.parquet").is_file():
            import pandas as pd

            done = pd.read_parquet(out / "explanations.parquet", columns=["saliency", "error"])
            n_maps, n_errors = int(done["saliency"].notna().sum()), int(done["error"].notna().sum())
    if not quiet:
        drawn = f", {len(writer_pictures.written)} picture(s)" if writer_pictures is not None else ""
        typer.echo(f"explained {n_maps} map(s), {n_errors} error(s){drawn} -> {out}", err=True)
    if n_errors:
        raise typer.Exit(EXIT_ROW_ERRORS)
