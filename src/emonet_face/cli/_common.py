"""Shared CLI plumbing: one-line errors and documented exit codes.

Exit codes: 0 = everything scored; 1 = ran to the end but some rows have an ``error``;
2 = usage or load error (bad option, missing input, model not found); 130 = interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from emonet_face.errors import EmoNetError

EXIT_OK = 0
EXIT_ROW_ERRORS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: <message>`` (one line) to stderr and exit."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else "failed"
    typer.echo(f"error: {first}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn :class:`EmoNetError` into a one-line message + exit 2, Ctrl-C into exit 130."""
    try:
        yield
    except EmoNetError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted; rows written so far are kept (rerun with --resume)", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def progress_enabled(quiet: bool) -> bool:
    """Progress bars only on an interactive terminal and without --quiet."""
    return not quiet and sys.stderr.isatty()
