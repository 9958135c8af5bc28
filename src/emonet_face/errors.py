"""Errors users can act on (the CLI prints them as one line, no traceback, and exits non-zero), and
how messages show a size."""

from __future__ import annotations


class EmoNetError(Exception):
    """Base class: the message names the input and says what to do."""


class InputError(EmoNetError):
    """An input file, folder or table cannot be used as given."""


class ModelLoadError(EmoNetError):
    """Weights or configs are missing, malformed or unsafe to load."""


def error_text(ids: dict, exc: BaseException) -> str:
    """One-line error message for an input that failed: an :class:`EmoNetError`'s own first line (it
    names the input already), else the input's ``path``, the exception type and its first line."""
    if isinstance(exc, EmoNetError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{ids.get('path', '?')}: {type(exc).__name__}: {detail}".rstrip(": ")


def format_size(n: int) -> str:
    """A byte count as every message shows it, in SI units (1 MB = 1,000,000 bytes, as
    ``--max-upload-mb`` counts): ``512 B``, ``1.7 MB``, ``3.5 GB``."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
