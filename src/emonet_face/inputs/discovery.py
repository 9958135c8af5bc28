"""Turn the user's INPUTS (files, folders, glob patterns) into an ordered list of media files."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

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


def _is_media(path: Path, suffixes: frozenset[str]) -> bool:
    return path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith(".")


def discover_inputs(
    inputs: Iterable[str | Path],
    *,
    recursive: bool = True,
    suffixes: frozenset[str] = IMAGE_SUFFIXES | VIDEO_SUFFIXES,
) -> list[Path]:
    """Expand files, folders (recursively, sorted) and glob patterns into media files.

    An explicitly named file is kept whatever its suffix, so that a mislabelled or corrupt file
    becomes an error row downstream instead of silently disappearing. Folders and globs keep
    only files with a known media suffix. Duplicates are dropped, first occurrence wins.
    Raises :class:`InputError` when an input does not exist or nothing at all is found.
    """
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(sorted(p for p in path.glob(pattern) if _is_media(p, suffixes)))
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            if not matches:
                raise InputError(f"{text}: the pattern matches no file; check the pattern or quote it for the shell")
            found.extend(p for p in matches if _is_media(p, suffixes))
        else:
            raise InputError(f"{text}: no such file or folder; check the path")
    unique = list(dict.fromkeys(found))
    if not unique:
        names = ", ".join(str(i) for i in inputs) or "(none given)"
        kinds = ", ".join(sorted(suffixes))
        raise InputError(
            f"{names}: no image or video files found (looked for {kinds}); point at files or a folder that holds them"
        )
    return unique
