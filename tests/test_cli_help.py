"""The help a user reads: every command and option of the typer app, as `--help` and the docs show it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import typer

from emonet_face import __version__
from emonet_face.cli.main import app

REST_MARKUP = re.compile(r"``|:(?:class|func|meth|mod|attr|data):`")


def walk(command, name: str = "emonet-face") -> Iterator[tuple[str, object]]:
    """Every command of the tree, with its full name (``emonet-face bench hq``)."""
    yield name, command
    for sub_name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, f"{name} {sub_name}")


def test_help_texts_are_plain_text_without_rest_markup():
    """Docstrings become `--help` verbatim: reST markup (``track``, :class:`X`) shows as stray backticks."""
    found = []
    for name, command in walk(typer.main.get_command(app)):
        texts = {"": command.help or ""} | {p.name: getattr(p, "help", None) or "" for p in command.params}
        found += [f"{name} {param}".strip() for param, text in texts.items() if REST_MARKUP.search(text)]
    assert not found, f"reST markup in the help of: {found}"


def test_every_command_lists_a_whole_sentence_as_its_summary():
    """The command lists (``--help``, the CLI reference) show click's short help, cut at 45 characters
    with "...": each command's first docstring line is a whole sentence that fits."""
    cut = {}
    for name, command in walk(typer.main.get_command(app)):
        summary = command.get_short_help_str(45)
        if name != "emonet-face" and (summary.endswith("...") or not summary.endswith(".")):
            cut[name] = summary
    assert not cut, f"summaries cut mid-sentence: {cut}"


def test_version_option_prints_the_package_version():
    from helpers_cli import run_cli

    result = run_cli("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"emonet-face {__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_fps_help_and_check_agree():
    """`--fps 0` was refused ("must be positive") although the help said `[x>=0.0]`."""
    from helpers_cli import run_cli

    predict = typer.main.get_command(app).commands["predict"]
    fps = next(p for p in predict.params if p.name == "fps")
    help_text = " ".join(fps.get_help_record(typer.Context(predict))[1].split())
    assert ">=0" not in help_text and "> 0" in help_text
    result = run_cli("predict", "clip.mp4", "--fps", "0")
    assert result.exit_code == 2
    assert "--fps 0" in result.output and "more than 0" in result.output and "Traceback" not in result.output


def test_our_warnings_print_as_one_line_and_others_keep_their_format():
    import warnings
    from pathlib import Path

    import emonet_face.heads
    from emonet_face.cli.main import format_warning

    ours = format_warning(
        UserWarning("heads/: no neutral stats file; using mean 0.0"), UserWarning, emonet_face.heads.__file__, 377
    )
    assert ours == "warning: heads/: no neutral stats file; using mean 0.0\n"
    theirs = format_warning(UserWarning("x"), UserWarning, str(Path(warnings.__file__)), 1)
    assert "UserWarning" in theirs
