"""One run folder: what every writer of a folder of results shares.

The Ray engine (``predict --engine ray``), the embedding store (``embed``), model bundles
(``download``), VLM annotation logs (``vlm annotate``) and the score tables of ``predict`` all write
files that a killed run must not leave half-written, a manifest that says what the folder is, and
refuse to write into a folder that holds something else. This module is that, once:

* **Atomic writes** (:func:`atomic_path`, :func:`atomic_write_text` / ``_bytes`` / ``_json``): the
  data goes to a hidden temporary name in the same folder (``.<name>.<random>.tmp``) and is renamed over the
  target with :func:`os.replace`, so a reader sees the old file or the new one, never a torn one; a
  write that fails (serialisation included) leaves the target as it was and no temporary behind.
  :func:`remove_temporaries` clears what a killed writer left; :func:`staged_folder` builds a whole
  folder beside its final name and renames it into place.
* **Versioned manifests** (:class:`ManifestFormat`): ``format`` (a name) and a version field, read
  back with one-line errors naming the file when it is missing, unreadable, of another format or
  written by a newer version; written atomically.
* **The resume check** (:func:`check_out_folder`): a non-empty output folder is continued only with
  ``--resume``; :func:`require_new_folder` for outputs that cannot be continued.
* **Provenance** (:func:`versions`, :func:`utc_timestamp`, :func:`provenance`): library versions,
  the host and the time, as the manifests record them.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emonet_face._version import __version__
from emonet_face.errors import EmoNetError, InputError

__all__ = [
    "CORE_PACKAGES",
    "ManifestFormat",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_out_folder",
    "provenance",
    "remove_temporaries",
    "require_new_folder",
    "staged_folder",
    "temporary_path",
    "utc_timestamp",
    "versions",
]

TMP_SUFFIX = ".tmp"
CORE_PACKAGES = ("emonet-face", "torch", "transformers")
"""The libraries every manifest's ``versions`` names (besides ``python``)."""


# --- atomic writes --------------------------------------------------------------------------------
def temporary_path(path: str | Path) -> Path:
    """Where :func:`atomic_path` writes ``path`` first: ``.<name>.<random>.tmp`` in the same folder
    (hidden, so readers of the folder such as pyarrow's dataset discovery skip it; same file system,
    so the rename is atomic; its own name, so two processes writing the same file never write into
    each other's temporary)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to (with any writer: pyarrow, pandas, csv);
    when the block ends normally it is synced and renamed over ``path``, when it raises it is removed
    and ``path`` is left as it was."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _fsync(path: Path) -> None:
    """Flush ``path`` to disk before the rename makes it visible (a power cut then never shows an
    empty file under the final name)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically (see :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as indented JSON (non-ASCII kept, other objects as ``str``),
    atomically. Serialised before anything is written: a value that cannot be serialised leaves
    nothing behind."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def remove_temporaries(folder: str | Path) -> None:
    """Delete the temporary files (``*.tmp``) a killed writer left in ``folder``."""
    for stale in Path(folder).glob(f"*{TMP_SUFFIX}"):
        if stale.is_file():
            stale.unlink()


@contextlib.contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """Build the new folder ``out`` under a hidden temporary name beside it and rename it into place
    when the block ends normally, so an interrupted build leaves no half folder (the temporary one is
    removed either way). ``out`` must not exist or be an empty folder (see :func:`require_new_folder`)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A plain mkdir, not tempfile.mkdtemp: the folder keeps its mode after the rename, and mkdtemp's
    # is drwx------; this one honours the umask like any folder the user makes.
    tmp = out.parent / f".{out.name}{TMP_SUFFIX}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the resume check -----------------------------------------------------------------------------
def _in_use(out: Path) -> bool:
    return out.exists() and (not out.is_dir() or any(out.iterdir()))


def check_out_folder(out: str | Path, *, resume: bool) -> bool:
    """The check before writing into the output folder ``out``: True when it holds a run to continue
    (not empty, and ``resume``), False when it is new or empty. A non-empty folder without ``resume``
    is refused (the one place that says so), and so is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file, not an output folder; choose another --out")
    if not _in_use(out):
        return False
    if not resume:
        raise InputError(f"{out}: output folder is not empty; pass --resume to continue it or choose another --out")
    return True


def require_new_folder(out: str | Path) -> Path:
    """``out`` as a path, refusing one that exists and is not an empty folder: for outputs that cannot
    be continued (a folder built beside it and renamed into place must not replace someone's files)."""
    out = Path(out)
    if _in_use(out):
        raise InputError(f"{out}: already exists and is not empty; choose a new --out folder")
    return out


# --- versioned manifests --------------------------------------------------------------------------
@dataclass(frozen=True)
class ManifestFormat:
    """A kind of run folder: its manifest file, the ``format`` name in it and the version written.

    ``what`` names the folder in messages with its article ("an embedding store"); ``label`` names
    the format ("embedding store"); ``hint`` says what to do when a folder has no manifest, ``redo``
    when its manifest cannot be used; ``error`` is the exception raised (a one-line message).
    """

    name: str
    version: int
    file: str
    what: str
    label: str
    hint: str
    redo: str
    version_key: str = "version"
    error: type[EmoNetError] = InputError

    def path(self, folder: str | Path) -> Path:
        return Path(folder) / self.file

    def header(self) -> dict[str, Any]:
        """The first fields of a manifest: ``format`` and the version."""
        return {"format": self.name, self.version_key: self.version}

    def is_in(self, folder: str | Path) -> bool:
        """True when ``folder`` has a manifest of this format (of any version: :meth:`read` judges that)."""
        try:
            data = json.loads(self.path(folder).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("format") == self.name

    def read(self, folder: str | Path, *, hint: str | None = None) -> dict[str, Any]:
        """The manifest of ``folder``, refusing (one line, naming the file) a missing, unreadable or
        foreign one and one written by a newer version; ``hint`` replaces the format's own advice for a
        folder without a manifest."""
        folder = Path(folder)
        path = self.path(folder)
        if not path.is_file():
            raise self.error(f"{folder}: not {self.what} (no {self.file}); {hint or self.hint}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise self.error(f"{path}: unreadable manifest ({detail}); {self.redo}") from None
        found = data.get("format") if isinstance(data, dict) else None
        if found != self.name:
            raise self.error(f"{path}: not the manifest of {self.what} (format {found!r}, expected {self.name!r}); {self.redo}")
        version = data.get(self.version_key)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise self.error(f"{path}: {self.label} {self.version_key} {version!r} is not a positive integer; {self.redo}")
        if version > self.version:
            writer = data.get("emonet_face") or (data.get("versions") or {}).get("emonet-face") or "?"
            raise self.error(
                f"{folder}: written by a newer emonet-face ({writer}, {self.label} format {version}); this emonet-face "
                f"({__version__}) reads {self.label} format {self.version}: upgrade emonet-face, or write the "
                f"{self.label} again with this version"
            )
        return data

    def write(self, folder: str | Path, manifest: dict[str, Any]) -> None:
        """Write ``manifest`` (its ``format`` and version first) atomically as the folder's manifest."""
        atomic_write_json(self.path(folder), {**self.header(), **manifest})


# --- provenance -----------------------------------------------------------------------------------
def versions(*packages: str, core: bool = True, missing: bool = False) -> dict[str, str | None]:
    """``python`` and the installed versions of :data:`CORE_PACKAGES` (``core``) and ``packages``;
    a package that is not installed is left out, or recorded as ``None`` with ``missing``."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (*(CORE_PACKAGES if core else ()), *packages):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            if missing:
                out[name] = None
    return out


def utc_timestamp(*, zulu: bool = False) -> str:
    """The time now in UTC to the second, ISO 8601 (``…+00:00``, or ``…Z`` with ``zulu``)."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return stamp.replace("+00:00", "Z") if zulu else stamp


def provenance(*packages: str) -> dict[str, Any]:
    """Where and when a run ran, with what: ``time`` (UTC), ``host`` and ``versions`` (see :func:`versions`)."""
    return {"time": utc_timestamp(), "host": platform.node(), "versions": versions(*packages)}
