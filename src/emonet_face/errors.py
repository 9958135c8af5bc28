"""Errors users can act on. The CLI prints them as one line (no traceback) and exits non-zero."""

from __future__ import annotations


class EmoNetError(Exception):
    """Base class: the message names the input and says what to do."""


class InputError(EmoNetError):
    """An input file, folder or table cannot be used as given."""


class ModelLoadError(EmoNetError):
    """Weights or configs are missing, malformed or unsafe to load."""
