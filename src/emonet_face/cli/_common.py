"""Shared CLI plumbing: one-line errors, the names of failed inputs, and the exit codes.

Exit codes (one rule for every command that scores inputs: predict, explain, embed, live, vlm
annotate): 0 = everything scored; 1 = the run went on to the end but some inputs failed (their rows
have an ``error``, named on stderr: a missing or unreadable file, a video that ends early);
2 = the run could not start (bad option, model not found, no input exists at all); 130 = interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

import typer

from emonet_face.errors import EmoNetError, os_error_advice, os_error_cause

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
    """Turn :class:`EmoNetError` (and unreadable files) into a one-line message + exit 2, Ctrl-C into exit 130.

    Outputs say their own write errors (:func:`emonet_face.runfolder.claim_output`: the file and "disk
    full"); an ``OSError`` that reaches here is said the same way, naming its file where it has one."""
    try:
        yield
    except EmoNetError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error_text(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted; rows written so far are kept (rerun with --resume)", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def os_error_text(exc: OSError) -> str:
    """``<file>: <cause said plainly>; <what to do>`` (the file left out where the error names none)."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{os_error_cause(exc)}; {os_error_advice(exc)}"


def report_failures(first_errors: Sequence[str], errors: int, where: str) -> None:
    """Name the inputs that failed, on stderr: the first errors (each names its input), then how many
    more there are and where they are (``where``: the output, or "the table above")."""
    for message in first_errors:
        typer.echo(f"  {message}", err=True)
    if errors > len(first_errors):
        typer.echo(f"  ... and {errors - len(first_errors)} more; see the `error` column in {where}", err=True)


def progress_enabled(quiet: bool) -> bool:
    """Progress bars only on an interactive terminal and without --quiet."""
    return not quiet and sys.stderr.isatty()
