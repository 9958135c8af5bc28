"""Errors users can act on. The CLI prints them as one line (no traceback) and exits non-zero."""

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
