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
* **One writer per output** (:func:`claim_output`): a run holds ``<out>.lock`` beside its output
  (file or folder) while it writes; another run is refused at once with a message naming the holder
  (pid, host, start time), a lock left by a run that died is taken over with a warning, and an
  ``OSError`` raised while writing (disk full, permission denied, read-only disk) becomes one
  :class:`~emonet_face.errors.OutputError` line naming the output and the cause.
* **Provenance** (:func:`versions`, :func:`utc_timestamp`, :func:`provenance`): library versions,
  the host and the time, as the manifests record them.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emonet_face._version import __version__
from emonet_face.errors import EmoNetError, InputError, OutputError, is_os_error, os_error_advice, os_error_cause

__all__ = [
    "CORE_PACKAGES",
    "LOCK_SUFFIX",
    "RESUME_HINT",
    "LockHolder",
    "ManifestFormat",
    "OutputClaim",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_out_folder",
    "claim_output",
    "lock_path",
    "provenance",
    "refuse_if_in_use",
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
    removed either way). ``out`` must not exist or be an empty folder (see :func:`require_new_folder`);
    it is claimed (:func:`claim_output`) while it is built."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with claim_output(out, then=STAGED_HINT):
        require_new_folder(out)  # again under the lock: a run that finished meanwhile left its folder
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


# --- one writer per output ----------------------------------------------------------------------
LOCK_SUFFIX = ".lock"
RESUME_HINT = "rows written so far are kept: rerun with --resume to finish"
"""What a resumable output's write error ends with (the default of :func:`claim_output`)."""
STAGED_HINT = "nothing half-written was left behind: run again"
"""What a folder built beside its place (:func:`staged_folder`: bundles, exports) says after a write error."""


@dataclass
class _Hold:
    fd: int
    depth: int = 1
    sigterm: Any = None
    """The SIGTERM handler to restore when the hold ends (see :func:`_interrupt_on_sigterm`)."""


_HELD: dict[Path, _Hold] = {}
"""Locks this process holds, by lock path (a claim inside a claim of the same output, e.g. a run and
its writer, is the same hold, counted in ``depth``)."""
_HELD_GUARD = threading.Lock()


def lock_path(out: str | Path) -> Path:
    """The lock file of the output ``out`` (a file or a folder): ``<out>.lock`` beside it, never inside
    a folder (a folder built elsewhere and renamed into place, and readers of the folder, never see it)."""
    out = Path(out)
    return out.with_name(out.name + LOCK_SUFFIX)


@dataclass(frozen=True)
class LockHolder:
    """The run holding a lock, as its lock file records it (JSON)."""

    pid: int
    host: str
    started: str
    command: str

    @classmethod
    def this_run(cls) -> LockHolder:
        return cls(os.getpid(), platform.node(), utc_timestamp(), shlex.join(sys.argv))

    @classmethod
    def parse(cls, data: bytes) -> LockHolder | None:
        """The holder recorded in a lock file's bytes; ``None`` when they are empty or not ours."""
        try:
            fields = json.loads(data.decode("utf-8"))
            return cls(int(fields["pid"]), str(fields["host"]), str(fields["started"]), str(fields.get("command", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"


def _try_lock(fd: int) -> bool:
    """Lock the open lock file ``fd`` for this process without waiting; False when another process holds
    it. A kernel lock (``flock``; ``msvcrt`` on Windows): it ends with its process, however it ends."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_holder(fd: int) -> LockHolder | None:
    return LockHolder.parse(os.pread(fd, 1 << 16, 0) if hasattr(os, "pread") else b"")


def _in_use_error(out: Path, holder: LockHolder | None) -> OutputError:
    who = f"another run ({holder.describe()})" if holder else "another run"
    return OutputError(f"{out}: is being written by {who}; wait for it or use another --out")


def refuse_if_in_use(out: str | Path) -> None:
    """Refuse at once (:class:`~emonet_face.errors.OutputError`) an output that another run holds, before
    any slow work (loading a model); the claim itself (:func:`claim_output`) decides when writing starts."""
    out = Path(out)
    lock = lock_path(out)
    with _HELD_GUARD:
        if lock in _HELD:
            return
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return  # no lock file (or none we may open): nobody holds it, or the claim will say why
    try:
        if not _try_lock(fd):
            raise _in_use_error(out, _read_holder(fd))
    finally:
        os.close(fd)  # closing drops a lock taken just now


def _take_lock(out: Path, lock: Path) -> int:
    """Open and lock ``lock``, record this run in it and return its descriptor; refuse an output held by
    another run, warn when taking over the lock of a run that died without releasing it."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                raise _in_use_error(out, _read_holder(fd))
            with contextlib.suppress(FileNotFoundError):
                on_disk, opened = os.stat(lock), os.fstat(fd)
                if (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino):
                    break  # else the holder before us removed the file between our open and lock: again
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        stale = _read_holder(fd)
        if stale is not None:
            warnings.warn(
                f"{out}: taking over the lock {lock.name} left by a run that is no longer running ({stale.describe()})",
                stacklevel=1,
            )
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(asdict(LockHolder.this_run())).encode("utf-8"))
    except BaseException:
        _drop_lock(lock, fd)
        raise
    return fd


def _drop_lock(lock: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        lock.unlink()  # while still locked: a run waiting on this file retries on the new one
    os.close(fd)


def _interrupt_on_sigterm() -> Any:
    """SIGTERM ends the run as Ctrl-C does (writers finish their output, locks are released), where it
    still has Python's default (death without cleanup); returns what to restore, or ``None``."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


class OutputClaim:
    """One run's hold on an output (see :func:`claim_output`): a context manager, or
    :meth:`acquire` / :meth:`release` for a writer object that lives across calls."""

    def __init__(self, out: str | Path, *, then: str = RESUME_HINT) -> None:
        self.out = Path(out)
        self.lock = lock_path(self.out)
        self.then = then
        self._acquired = False

    def acquire(self) -> OutputClaim:
        """Take the output's lock (again, if this process holds it already); refuse one held by another run."""
        with self.errors(), _HELD_GUARD:
            held = _HELD.get(self.lock)
            if held is not None:
                held.depth += 1
            else:
                self.lock.parent.mkdir(parents=True, exist_ok=True)
                _HELD[self.lock] = _Hold(_take_lock(self.out, self.lock), sigterm=_interrupt_on_sigterm())
        self._acquired = True
        return self

    def release(self) -> None:
        """Let go of the lock (the file is removed when the outermost claim ends); safe to call twice."""
        if not self._acquired:
            return
        self._acquired = False
        with _HELD_GUARD:
            held = _HELD[self.lock]
            held.depth -= 1
            if held.depth:
                return
            del _HELD[self.lock]
            _drop_lock(self.lock, held.fd)
        if held.sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, held.sigterm)

    def write_error(self, exc: BaseException) -> OutputError:
        """``exc`` raised while writing, as one line naming the output, the cause and what to do."""
        advice = os_error_advice(exc, "check the output location")
        return OutputError(f"{self.out}: cannot write: {os_error_cause(exc)}; {advice}; {self.then}")

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn an ``OSError`` raised in the block (or a library's error wrapping one, see
        :func:`~emonet_face.errors.is_os_error`) into :meth:`write_error`."""
        try:
            yield
        except Exception as exc:
            if not is_os_error(exc):
                raise
            raise self.write_error(exc) from exc

    def __enter__(self) -> OutputClaim:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc is not None and is_os_error(exc):
                raise self.write_error(exc) from exc
        finally:
            self.release()


def claim_output(out: str | Path, *, then: str = RESUME_HINT) -> OutputClaim:
    """Hold the output ``out`` (a file or a folder) while this run writes it: ``with claim_output(out):``.

    * One writer per output: the lock file ``<out>.lock`` (JSON: pid, host, start time, command) is
      taken before anything is written and removed on every way out (an error, Ctrl-C; SIGTERM is
      turned into Ctrl-C while it is held). Another run on ``out`` is refused at once with an
      :class:`~emonet_face.errors.OutputError` naming the holder. The lock is a kernel lock on that
      file, so it ends with its process however it ends: a lock file left by a run that died is
      taken over with a warning. A claim inside a claim of the same output in one process is the same hold.
    * Write errors said plainly: an ``OSError`` leaving the block becomes one line naming ``out``, the
      cause ("disk full", "permission denied", "read-only file system") and what to do, ending with
      ``then`` (by default: rows written so far are kept, rerun with ``--resume``).
    """
    return OutputClaim(out, then=then)


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
