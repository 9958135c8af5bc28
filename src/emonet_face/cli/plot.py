"""`emonet-face plot SCORES --out DIR`: the ``--save-vis`` pictures from a saved score table, plus a
timeline of the top emotions for each face track of each video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import fail, user_errors
from emonet_face.cli.options import QuietOpt, SmoothOpt


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command("plot")(plot)


def plot(
    scores: Annotated[Path, typer.Argument(help="Score table written by predict (.csv, .parquet or .jsonl).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG files.")],
    smooth: SmoothOpt = 0.0,
    quiet: QuietOpt = False,
) -> None:
    """Draw pictures of a saved score table.

    Draw pictures from a score table: per image the face boxes with top-3 emotions, per face a bar
    chart of the 40 emotions by family and the 4 extra dimensions, per video a timeline for each
    face track (or for the largest face per frame when the table has no track column)."""
    if not scores.is_file():
        fail(f"{scores}: no such file; pass a score table written by `emonet-face predict --out`")
    with user_errors():
        from emonet_face import taxonomy as tx
        from emonet_face.errors import InputError
        from emonet_face.inputs import load_image
        from emonet_face.outputs import read_table
        from emonet_face.viz import PictureWriter

        table = read_table(scores)
        if table.empty:
            raise InputError(f"{scores}: the table has no rows; nothing to plot")
        needed = ["path", *(f"prob.{k}" for k in tx.EMOTION_KEYS)]
        missing = [c for c in needed if c not in table.columns]
        if missing:
            raise InputError(
                f"{scores}: not a predict score table (missing {', '.join(missing[:3])}"
                f"{'…' if len(missing) > 3 else ''}); plot the file written by `emonet-face predict --out`"
            )
        written = PictureWriter(out, load=load_image, smooth=smooth).table(table)
    if not quiet:
        typer.echo(f"wrote {len(written)} picture(s) -> {out}", err=True)
