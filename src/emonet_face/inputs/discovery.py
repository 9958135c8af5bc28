"""Turn the user's INPUTS (files, folders, glob patterns) into an ordered list of media files."""

from __future__ import annotations

import glob
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from braceexpand import braceexpand

from emonet_face.errors import InputError

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".webp",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".avif",
        ".jfif",
        ".ppm",
        ".pgm",
    }
)
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".webm", ".avi", ".mkv", ".m4v", ".mpg", ".mpeg"})
SHARD_SUFFIXES = frozenset({".tar", ".parquet"})
"""WebDataset tar shards and Parquet files with image bytes (see :mod:`emonet_face.inputs.shards`)."""


def _is_media(path: Path, suffixes: frozenset[str]) -> bool:
    return path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith(".")


def _drop_shard_metadata(paths: list[Path]) -> list[Path]:
    tars = {p.with_suffix("") for p in paths if p.suffix.lower() == ".tar"}
    return [p for p in paths if not (p.suffix.lower() == ".parquet" and p.with_suffix("") in tars)]


def expand_braces(text: str) -> list[str]:
    """``shards/{00000..00099}.tar`` → the 100 names (bash brace expansion, zero padding kept)."""
    if "{" not in text:
        return [text]
    return list(braceexpand(text))


@dataclass
class FoundInputs:
    """What INPUTS name: ``files`` in input order (a named path that does not exist included: it becomes
    an error row), the ``missing`` names among them, and the folders and patterns that hold no media
    file (``empty``)."""

    files: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)

    def report(self, inputs: Iterable[str | Path], suffixes: frozenset[str], *, others: int = 0) -> None:
        """One rule for every command: the run starts when anything exists (``others``: inputs that are
        not paths, e.g. arrays); missing names and empty folders are then named in a warning. When
        nothing exists at all, an :class:`InputError` says why for each input."""
        missing = {Path(m).expanduser() for m in self.missing}
        if not any(f not in missing for f in self.files) and not others:
            raise InputError(self._nothing_message(inputs, suffixes))
        if self.missing:
            warnings.warn(
                f"{_names(self.missing)}: no such file or folder; each gets a row with an `error`, the other "
                "inputs are scored",
                stacklevel=2,
            )
        if self.empty:
            warnings.warn(f"{_names(self.empty)}: no image or video files or shards found; skipped", stacklevel=2)

    def _nothing_message(self, inputs: Iterable[str | Path], suffixes: frozenset[str]) -> str:
        """Why nothing can be scored: one input's own message, or each input's in short."""
        patterns = [e for e in self.empty if glob.has_magic(e) and not Path(e).expanduser().exists()]
        folders = [e for e in self.empty if e not in patterns]
        problems = [f"{m}: no such file or folder" for m in self.missing]
        problems += [f"{p}: the pattern matches no file" for p in patterns]
        problems += [f"{f}: no image or video files or shards found" for f in folders]
        if len(problems) > 1:
            return f"nothing to score ({'; '.join(problems)}); check the paths"
        if self.missing:
            return f"{self.missing[0]}: no such file or folder; check the path"
        if patterns:
            return f"{patterns[0]}: the pattern matches no file; check the pattern or quote it for the shell"
        return _nothing_found(folders[0] if folders else ", ".join(str(i) for i in inputs) or "(none given)", suffixes)


def _names(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _nothing_found(given: str, suffixes: frozenset[str]) -> str:
    kinds = ", ".join(sorted(suffixes))
    return (
        f"{given}: no image or video files or shards found (looked for {kinds}); point at files or a folder that "
        "holds them"
    )


def find_inputs(
    inputs: Iterable[str | Path],
    *,
    recursive: bool = True,
    suffixes: frozenset[str] = IMAGE_SUFFIXES | VIDEO_SUFFIXES | SHARD_SUFFIXES,
) -> FoundInputs:
    """:func:`discover_inputs` without its verdict: what each input names (see :class:`FoundInputs`)."""
    found = FoundInputs()
    for item in inputs:
        text = str(item)
        path = Path(text).expanduser()
        if not path.exists() and "{" in text:
            names = expand_braces(text)
            if names != [text]:
                inner = find_inputs(names, recursive=recursive, suffixes=suffixes)
                found.files += inner.files
                found.missing += inner.missing
                found.empty += inner.empty
                continue
        if path.is_file():
            found.files.append(path)
            continue
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            media = _drop_shard_metadata(sorted(p for p in path.glob(pattern) if _is_media(p, suffixes)))
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            media = _drop_shard_metadata([p for p in matches if _is_media(p, suffixes)])
        else:
            found.files.append(path)  # a named file that is not there: an error row downstream
            found.missing.append(text)
            continue
        found.files += media
        if not media:
            found.empty.append(text)
    found.files = list(dict.fromkeys(found.files))
    found.missing = list(dict.fromkeys(found.missing))
    found.empty = list(dict.fromkeys(found.empty))
    return found


def discover_inputs(
    inputs: Iterable[str | Path],
    *,
    recursive: bool = True,
    suffixes: frozenset[str] = IMAGE_SUFFIXES | VIDEO_SUFFIXES | SHARD_SUFFIXES,
) -> list[Path]:
    """Expand files, folders (recursively, sorted), glob patterns and brace patterns
    (``shards/{00000..00099}.tar``) into media files and shards.

    An explicitly named file is kept whatever its suffix, so that a mislabelled or corrupt file
    becomes an error row downstream instead of silently disappearing; so is a named file that does
    not exist (a warning names it). Folders and globs keep only files with a known media suffix
    (one that holds none is named in a warning); there, a ``.parquet`` beside a ``.tar`` of the same
    name is img2dataset's metadata, not a shard, and is left out. Duplicates are dropped, first
    occurrence wins. Raises :class:`InputError` when nothing at all exists: the run cannot start.
    """
    inputs = list(inputs)
    found = find_inputs(inputs, recursive=recursive, suffixes=suffixes)
    found.report(inputs, suffixes)
    return found.files
