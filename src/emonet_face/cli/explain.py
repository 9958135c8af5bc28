"""`emonet-face explain`: which parts of each face drive its emotions (maps over the encoder's patches).

Writes ``OUT/explanations.parquet`` (one row per input, face and emotion; columns in
:mod:`emonet_face.explain.table`) and, unless ``--no-pictures``, ``OUT/pictures/``: per face and
emotion the map over the crop, per picture the top emotion's map inside each face's crop square.
The run is :func:`emonet_face.pipeline.explain_run`; this module parses the options and reports.

Exit codes: 0 everything explained, 1 some inputs failed (their rows have an ``error``, the first few
named on stderr), 2 the run could not start (usage or load error, no input exists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import EXIT_ROW_ERRORS, progress_enabled, report_failures, user_errors
from emonet_face.cli.options import (
    AlignOpt,
    BackendOpt,
    CacheOpt,
    CarryJsonOpt,
    DetectorOpt,
    DeviceOpt,
    DtypeOpt,
    EncoderOpt,
    FacesOpt,
    ForcePrecisionOpt,
    FpsOpt,
    HeadsOpt,
    ImageColumnOpt,
    InputsArg,
    MarginOpt,
    MaxFramesOpt,
    MinFaceScoreOpt,
    ModelOpt,
    NoNormalizeOpt,
    QuietOpt,
    RevisionOpt,
    face_options,
    media_options,
    model_options,
)

METHOD_NAMES = "integrated-gradients (default), occlusion"
DEFAULT_STEPS = 2
"""Listed literally (importing the explain package at CLI import would load torch); tests check them."""

OutFolderOpt = Annotated[
    Path, typer.Option("--out", "-o", help="Output folder: explanations.parquet and pictures/ go there.")
]
EmotionsOpt = Annotated[
    str | None,
    typer.Option(
        "--emotions",
        help="Explain these emotions for every face: head keys or names, comma-separated (bitterness,awe). "
        "Default: each face's --top emotions.",
    ),
]
TopOpt = Annotated[
    int, typer.Option("--top", min=1, help="Explain each face's K top emotions, ranked as predict ranks top1..top3.")
]
MethodOpt = Annotated[
    str,
    typer.Option(
        "--method",
        help=f"{METHOD_NAMES}. integrated-gradients runs the PyTorch encoder (loaded beside a compiled one), "
        "one forward and one backward pass per emotion per --steps; occlusion needs forward passes only "
        "(any backend), one per patch window (577 at 24x24 patches with --window 1).",
    ),
]
CropBatchOpt = Annotated[
    int, typer.Option("--batch-size", "-b", min=1, help="Crops per forward pass (occluded copies, path points).")
]
WindowOpt = Annotated[int, typer.Option("--window", min=1, help="occlusion: window side in patches.")]
StrideOpt = Annotated[
    int | None, typer.Option("--stride", min=1, help="occlusion: window step in patches (default: the window).")
]
StepsOpt = Annotated[
    int,
    typer.Option(
        "--steps",
        min=1,
        help="integrated-gradients: points on the path from grey to the crop; each costs one forward pass "
        "and one backward pass per emotion (2-core CPU, so400m: ~1.3 s each). 1 is twice as fast but missed "
        "the cue on a quarter of the pictures of some toy models; more is closer to the integral.",
    ),
]
PicturesOpt = Annotated[
    bool, typer.Option("--pictures/--no-pictures", help="Draw the maps as PNG pictures in OUT/pictures.")
]


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)


def explain(
    inputs: InputsArg,
    out: OutFolderOpt,
    emotions: EmotionsOpt = None,
    top: TopOpt = 3,
    method: MethodOpt = "integrated-gradients",
    batch_size: CropBatchOpt = 8,
    window: WindowOpt = 1,
    stride: StrideOpt = None,
    steps: StepsOpt = DEFAULT_STEPS,
    pictures: PicturesOpt = True,
    model: ModelOpt = "large",
    encoder: EncoderOpt = None,
    heads: HeadsOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = None,
    backend: BackendOpt = "auto",
    dtype: DtypeOpt = "auto",
    no_normalize: NoNormalizeOpt = False,
    force_precision: ForcePrecisionOpt = False,
    faces: FacesOpt = "auto",
    detector: DetectorOpt = None,
    min_face_score: MinFaceScoreOpt = None,
    align: AlignOpt = False,
    margin: MarginOpt = 0.4,
    fps: FpsOpt = 1.0,
    max_frames: MaxFramesOpt = None,
    image_column: ImageColumnOpt = None,
    carry_json: CarryJsonOpt = True,
    quiet: QuietOpt = False,
) -> None:
    """Show which face regions drive each emotion.

    Explain which parts of each face raise or lower its emotions (maps over the encoder's patch grid)."""
    with user_errors():
        from emonet_face.explain import ExplainOptions
        from emonet_face.explain.runs import EXPLANATIONS_FILE
        from emonet_face.inputs import discover_inputs
        from emonet_face.pipeline import EmoNetFace, explain_run

        run = ExplainOptions(
            out=out, emotions=emotions, top=top, method=method, batch_size=batch_size, window=window, stride=stride,
            steps=steps, pictures=pictures,
        )
        model_opts = model_options(
            model=model, encoder=encoder, heads=heads, revision=revision, cache_dir=cache_dir, device=device,
            backend=backend, dtype=dtype, no_normalize=no_normalize, force_precision=force_precision,
        )
        face_opts = face_options(faces=faces, detector=detector, min_face_score=min_face_score, align=align, margin=margin)
        media_opts = media_options(fps=fps, max_frames=max_frames, image_column=image_column, carry_json=carry_json)
        paths = discover_inputs(inputs)
        net = EmoNetFace.from_pretrained(options=model_opts)
        summary = explain_run(net, paths, run, faces=face_opts, media=media_opts, progress=progress_enabled(quiet))
    if not quiet:
        drawn = f", {summary.pictures} picture(s)" if summary.pictures is not None else ""
        typer.echo(f"explained {summary.maps} map(s), {summary.errors} error(s){drawn} -> {out}", err=True)
        report_failures(summary.first_errors, summary.errors, str(out / EXPLANATIONS_FILE))
    if summary.errors:
        raise typer.Exit(EXIT_ROW_ERRORS)
