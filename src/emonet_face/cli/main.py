"""The ``emonet-face`` command. Each sub-command lives in its own module and is registered here;
heavy imports happen inside the commands so that ``--help`` stays instant."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from emonet_face._version import __version__
from emonet_face.cli import (
    bench,
    download,
    embed,
    explain,
    export,
    inference,
    live,
    plot,
    precision,
    serve,
    stats,
    train,
    vlm,
)

_PACKAGE = str(Path(__file__).resolve().parents[1])
_default_format = warnings.formatwarning


def format_warning(message, category, filename, lineno, line=None) -> str:
    """Our own warnings as one line, ``warning: <what and what to do>``, as errors are: the source line
    that Python prints under a warning means nothing to a user. Other libraries' keep their format."""
    if str(Path(filename).resolve()).startswith(_PACKAGE):
        first = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
        return f"warning: {first}\n"
    return _default_format(message, category, filename, lineno, line)


warnings.formatwarning = format_warning

EXIT_CODES = (
    "Exit codes: 0 all inputs scored; 1 the run went on but some inputs failed (their rows have an error, "
    "named on stderr); 2 the run could not start (bad option, model not loaded, no input exists); 130 interrupted."
)

app = typer.Typer(
    name="emonet-face",
    help="Fine-grained facial emotion recognition on the EmoNet-Face taxonomy (40 emotions + 4 dimensions).",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"emonet-face {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """The options before a command (``emonet-face --version``); the commands are registered below."""


inference.register(app)
explain.register(app)
plot.register(app)
embed.register(app)
export.register(app)
download.register(app)
train.register(app)
stats.register(app)
serve.register(app)
live.register(app)
precision.register(app)
app.add_typer(bench.app, name="bench")
app.add_typer(vlm.app, name="vlm")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
