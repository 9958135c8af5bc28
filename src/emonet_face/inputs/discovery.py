"""Turn the user's INPUTS (files, folders, glob patterns) into an ordered list of media files."""

from __future__ import annotations

import glob
from collections.abc import Iterable
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


def discover_inputs(
    inputs: Iterable[str | Path],
    *,
    recursive: bool = True,
    suffixes: frozenset[str] = IMAGE_SUFFIXES | VIDEO_SUFFIXES | SHARD_SUFFIXES,
) -> list[Path]:
    """Expand files, folders (recursively, sorted), glob patterns and brace patterns
    (``shards/{00000..00099}.tar``) into media files and shards.

    An explicitly named file is kept whatever its suffix, so that a mislabelled or corrupt file
    becomes an error row downstream instead of silently disappearing. Folders and globs keep
    only files with a known media suffix; there, a ``.parquet`` beside a ``.tar`` of the same name
    is img2dataset's metadata, not a shard, and is left out. Duplicates are dropped, first occurrence wins.
    Raises :class:`InputError` when an input does not exist or nothing at all is found.
    """
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text).expanduser()
        if not path.exists() and "{" in text:
            names = expand_braces(text)
            if names != [text]:
                found.extend(discover_inputs(names, recursive=recursive, suffixes=suffixes))
                continue
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(_drop_shard_metadata(sorted(p for p in path.glob(pattern) if _is_media(p, suffixes))))
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            if not matches:
                raise InputError(f"{text}: the pattern matches no file; check the pattern or quote it for the shell")
            found.extend(_drop_shard_metadata([p for p in matches if _is_media(p, suffixes)]))
        else:
            raise InputError(f"{text}: no such file or folder; check the path")
    unique = list(dict.fromkeys(found))
    if not unique:
        given = ", ".join(str(i) for i in inputs) or "(none given)"
        kinds = ", ".join(sorted(suffixes))
        raise InputError(
            f"{given}: no image or video files or shards found (looked for {kinds}); point at files or a folder that holds them"
        )
    return unique
