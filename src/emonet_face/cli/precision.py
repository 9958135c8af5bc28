"""`emonet-face check-precision PHOTOS --dtype int8`: a precision's scores against float32 on your own
photos, judged against documented thresholds (:mod:`emonet_face.pipeline.precision`).

Exit codes: 0 pass, 1 fail (the verdict is recorded either way for int8), 2 usage or load error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import EXIT_ROW_ERRORS, user_errors
from emonet_face.cli.options import (
    AlignOpt,
    BackendOpt,
    BatchSizeOpt,
    CacheOpt,
    CarryJsonOpt,
    DetectorOpt,
    DeviceOpt,
    DtypeOpt,
    EncoderOpt,
    FacesOpt,
    FpsOpt,
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
    RevisionOpt,
    face_options,
    media_options,
    model_options,
)

ReportOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Folder for the report: report.json, report.md and scatter.png (per family)."),
]


def check_precision(
    inputs: InputsArg,
    dtype: DtypeOpt = "auto",
    out: ReportOpt = None,
    model: ModelOpt = "large",
    encoder: EncoderOpt = None,
    heads: HeadsOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
    batch_size: BatchSizeOpt = 16,
    num_workers: NumWorkersOpt = None,
    device: DeviceOpt = None,
    backend: BackendOpt = "auto",
    no_normalize: NoNormalizeOpt = False,
    quiet: QuietOpt = False,
    faces: FacesOpt = "auto",
    detector: DetectorOpt = None,
    min_face_score: MinFaceScoreOpt = None,
    align: AlignOpt = False,
    margin: MarginOpt = 0.4,
    fps: FpsOpt = 1.0,
    max_frames: MaxFramesOpt = None,
    image_column: ImageColumnOpt = None,
    carry_json: CarryJsonOpt = True,
) -> None:
    """Compare a precision with float32 on photos.

    Score PHOTOS in float32 and in --dtype; report agreement per head and overall; exit 0 pass, 1 fail."""
    with user_errors():
        from emonet_face.inputs import discover_inputs
        from emonet_face.pipeline.precision import check_precision as run_check
        from emonet_face.pipeline.precision import write_precision_report

        model_opts = model_options(
            model=model, encoder=encoder, heads=heads, revision=revision, cache_dir=cache_dir, device=device,
            backend=backend, dtype=dtype, no_normalize=no_normalize,
        )
        face_opts = face_options(faces=faces, detector=detector, min_face_score=min_face_score, align=align, margin=margin)
        media_opts = media_options(fps=fps, max_frames=max_frames, image_column=image_column, carry_json=carry_json)
        check = run_check(
            discover_inputs(inputs), model=model_opts, dtype=dtype, faces=face_opts, media=media_opts,
            batch_size=batch_size, num_workers=num_workers,
        )
        written = write_precision_report(check, out) if out is not None else []
    report = check.report
    typer.echo(f"{report.candidate.get('precision')} against float32 ({report.reference.get('backend')}): {report.summary()}")
    if not quiet:
        for line in ([f"recorded for later --dtype int8 runs: {check.record}"] if check.record else []) + [
            f"wrote {path}" for path in written
        ]:
            typer.echo(line, err=True)
    if not report.passed:
        raise typer.Exit(EXIT_ROW_ERRORS)


def register(app: typer.Typer) -> None:
    """Attach this module's command to the main app."""
    app.command("check-precision")(check_precision)
