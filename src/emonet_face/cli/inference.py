"""`emonet-face predict` and `emonet-face score` (not built yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
