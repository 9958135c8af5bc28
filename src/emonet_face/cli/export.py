"""`emonet-face export`: encoder + heads as one ONNX / OpenVINO graph with a config.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import user_errors
from emonet_face.cli.options import CacheOpt, EncoderOpt, HeadsOpt, RevisionOpt


def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the graph, config.json and preprocessing.")],
    encoder: EncoderOpt = None,
    heads: HeadsOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", help="onnx (ONNX Runtime, float32) or openvino (OpenVINO IR).")
    ] = "onnx",
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype",
            help="float32; or (openvino) float16 / bfloat16: float16-compressed weights (half the size), the compute "
            "precision is chosen at run time (predict --dtype); or (onnx) int8: ONNX Runtime dynamic quantisation "
            "(check the source model first: emonet-face check-precision PHOTOS --dtype int8).",
        ),
    ] = "float32",
    model: Annotated[
        str, typer.Option("--model", "-m", help="Released model whose defaults to use: large, small.")
    ] = "large",
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Export encoder and heads as one graph.

    Export one graph: pixels (N,3,H,W) -> embedding, raw, centred, probs; run it with `predict --model DIR`."""
    with user_errors():
        from emonet_face.export import export_model
        from emonet_face.runtime import quiet_transformers

        with quiet_transformers():
            folder = export_model(
                out, encoder=encoder, heads=heads, model=model, fmt=fmt, dtype=dtype, revision=revision,
                cache_dir=cache_dir,
            )
    typer.echo(
        f"exported {fmt} ({dtype}) -> {folder}; run it with: emonet-face predict IMAGES --model {folder}", err=True
    )


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command("export")(export)
