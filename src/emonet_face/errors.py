"""Errors users can act on. The CLI prints them as one line (no traceback) and exits non-zero."""

from __future__ import annotations

from pathlib import Path


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
