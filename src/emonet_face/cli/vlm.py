"""`emonet-face vlm ...` (not built yet)."""

from __future__ import annotations

import typer

app = typer.Typer(help="vlm commands", no_args_is_help=True)
