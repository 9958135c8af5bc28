"""Errors users can act on (the CLI prints them as one line, no traceback, and exits non-zero), and
how messages show a size."""

from __future__ import annotations

import errno
import importlib
import os
import re
from pathlib import Path
from types import ModuleType


class EmoNetError(Exception):
    """Base class: the message names the input and says what to do."""


class InputError(EmoNetError):
    """An input file, folder or table cannot be used as given."""


class ModelLoadError(EmoNetError):
    """Weights or configs are missing, malformed or unsafe to load."""


class OutputError(EmoNetError):
    """An output cannot be written (disk full, no permission, read-only disk) or another run is writing it."""


_PLAIN_CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such file or folder",
    errno.EIO: "input/output error (a failing disk or a lost network share)",
    errno.EFBIG: "file too large for this file system",
}
_WHAT_TO_DO = {
    errno.ENOSPC: "free some space or choose another output",
    errno.EDQUOT: "free some space or choose another output",
    errno.EACCES: "fix the permissions or choose another output",
    errno.EPERM: "fix the permissions or choose another output",
    errno.EROFS: "choose an output on a writable disk",
}


def os_error_code(exc: BaseException) -> int | None:
    """The errno of ``exc``: an ``OSError``'s own, or the one in the text of a library's error that
    wraps one (pyarrow: ``[errno 28]``; safetensors, written in Rust: ``(os error 28)``)."""
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    found = re.search(r"\[errno (\d+)\]|\(os error (\d+)\)", str(exc), flags=re.IGNORECASE)
    return int(found.group(1) or found.group(2)) if found else None


def is_os_error(exc: BaseException) -> bool:
    """True for an ``OSError``, and for another library's error that carries one (see :func:`os_error_code`);
    never for our own errors, which say what they are."""
    return not isinstance(exc, EmoNetError) and (isinstance(exc, OSError) or os_error_code(exc) is not None)


def os_error_cause(exc: BaseException) -> str:
    """What went wrong, said plainly: ``disk full (No space left on device)``, ``permission denied``…"""
    code = os_error_code(exc)
    text = str(exc).strip()
    strerror = exc.strerror if isinstance(exc, OSError) else None
    # the system's own words for the errno: pyarrow's strerror is a paragraph ("Error writing bytes…")
    detail = os.strerror(code) if code else (strerror or (text.splitlines()[0] if text else ""))
    plain = _PLAIN_CAUSES.get(code) if code else None
    if plain is None:
        return detail or type(exc).__name__
    return plain if not detail or detail.lower() == plain else f"{plain} ({detail})"


def os_error_advice(exc: BaseException, default: str = "check the path and permissions") -> str:
    """What the user can do about ``exc`` (free space, fix permissions…), else ``default``."""
    code = os_error_code(exc)
    return _WHAT_TO_DO.get(code, default) if code else default


def error_text(ids: dict, exc: BaseException) -> str:
    """One-line error message for an input that failed: an :class:`EmoNetError`'s own first line (it
    names the input already), else the input's ``path``, the exception type and its first line."""
    if isinstance(exc, EmoNetError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{ids.get('path', '?')}: {type(exc).__name__}: {detail}".rstrip(": ")


def damaged_file(path: str | Path, detail: object) -> ModelLoadError:
    """The one-line error for a weights or config file that cannot be read (truncated by a download or a
    copy that stopped, overwritten), saying how to get a good copy: a file of the Hugging Face cache
    (``…/snapshots/<commit>/<file>``, a link to a blob) comes back when its blob is deleted and the
    model is loaded again with network access; any other file must be replaced by the user."""
    path = Path(path)
    text = str(detail).strip().splitlines()[0] if str(detail).strip() else type(detail).__name__
    text = text.split(". ")[0]  # e.g. torch's paragraph about miniz errors: its first sentence says it
    if len(path.parts) >= 3 and path.parent.parent.name == "snapshots":
        blob = path.resolve()
        return ModelLoadError(
            f"{path}: damaged or incomplete file in the Hugging Face cache ({text}); delete {blob} "
            "and run again with network access to download it again"
        )
    return ModelLoadError(f"{path}: damaged or incomplete file ({text}); replace it with a complete copy")


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


def format_size(n: int) -> str:
    """A byte count as every message shows it, in SI units (1 MB = 1,000,000 bytes, as
    ``--max-upload-mb`` counts): ``512 B``, ``1.7 MB``, ``3.5 GB``."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
