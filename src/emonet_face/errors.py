"""Errors users can act on. The CLI prints them as one line (no traceback) and exits non-zero."""

from __future__ import annotations

import importlib
from types import ModuleType


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


def require_extra(
    module: str,
    *,
    feature: str,
    extra: str,
    package: str | None = None,
    error: type[EmoNetError] | None = None,
    otherwise: str = "",
) -> ModuleType:
    """``import module``, or a one-line error naming what needs it and the extra that installs it.

    The optional features (a detector, a backend, a command) import their packages only when used; a
    user without the extra gets ``--detector dlib needs dlib: pip install 'emonet-face[dlib]'`` instead
    of a traceback. The one place that says how to install what is missing, so every message agrees.

    Args:
        module: The module to import (``"dlib"``, ``"sklearn.metrics"``).
        feature: What needs it, as the user typed it (``"--detector dlib"``, ``"emonet-face vlm annotate"``).
        extra: The ``emonet-face[...]`` extra that installs it.
        package: The name to show (``"scikit-learn"``); by default the top-level module that is missing.
        error: The exception class to raise (an :class:`EmoNetError`; the base class by default).
        otherwise: An alternative to offer after the install command (``"or choose another --detector"``).

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        if missing.split(".")[0] == "emonet_face":
            raise  # a module of ours is missing: a broken install or a bug, not an extra
    name = package or missing.split(".")[0]
    tail = f"; {otherwise}" if otherwise else ""
    raise (error or EmoNetError)(f"{feature} needs {name}: pip install 'emonet-face[{extra}]'{tail}") from None
