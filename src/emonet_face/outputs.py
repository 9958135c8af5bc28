"""The score table and its writers.

One row per scored item (image, face, frame…): identifier columns first (``path`` and whatever a
source adds, e.g. ``frame``/``time``/``face``), then ``top1``..``top3`` (emotion keys), then for
every head key ``<key>`` (neutral-centred score), ``prob.<key>`` (softmax over the 40 centred
emotion scores; emotions only), ``raw.<key>`` (raw head output), and ``error`` (empty when the
row was scored).

Writers append batch by batch so that a killed run keeps everything already written:

* ``.csv`` / ``.jsonl``: append + flush after each batch. A kill can at worst leave a partial
  last line; :func:`open_writer` with ``resume=True`` cuts it off before appending.
* ``.parquet``: a Parquet file is unreadable until its footer is written, so each batch goes to
  its own complete part file in ``<out>.parts/`` (written to a temporary name, then renamed:
  :func:`emonet_face.runfolder.atomic_path`). :meth:`ParquetWriter.close` concatenates the previous
  output (when resuming) and all parts into a temporary file beside ``<out>`` and atomically renames
  it over ``<out>``. A killed run leaves ``<out>`` untouched and the parts on disk; ``--resume``
  picks both up. ``metadata`` (what produced the scores: encoder, backend, precision, device,
  heads) goes into the Parquet schema metadata under the key ``emonet_face`` (JSON); read it with
  :func:`read_metadata`.

Every writer holds its output (:func:`emonet_face.runfolder.claim_output`) from the moment it is
opened until it is closed: a second run on the same file is refused, and a write that fails (disk
full, permission denied) is one line naming the file; the batch being written when it failed is
taken back whole, so the rows before it stay readable and ``--resume`` finishes the run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emonet_face.errors import InputError
from emonet_face.heads import postprocess_scores
from emonet_face.runfolder import RESUME_HINT, atomic_path, claim_output
from emonet_face.taxonomy import EMOTION_KEYS, EXTRA_KEYS

__all__ = [
    "ERRORS_SHOWN",
    "KEY_COLUMNS",
    "OUTPUT_SUFFIXES",
    "CsvWriter",
    "JsonlWriter",
    "ParquetWriter",
    "ScoreWriter",
    "build_score_table",
    "check_output_suffix",
    "done_keys",
    "iter_written",
    "keep_errors",
    "open_writer",
    "read_metadata",
    "read_table",
    "row_key",
    "summary_columns",
    "write_table",
    "written_errors",
]

KEY_COLUMNS = ("path", "key", "frame")
"""Columns that identify an input for ``--resume``: the file (or shard), the sample ``key`` in a
shard and the video ``frame``, each only when present."""
OUTPUT_SUFFIXES = (".csv", ".parquet", ".jsonl")
METADATA_KEY = b"emonet_face"
TOP_K = 3
INTEGER_ID_COLUMNS = ("face", "frame", "track")
"""Identifier columns that hold whole numbers or nothing: kept as pandas' nullable ``Int64``, so a row
without a face leaves ``face`` empty instead of turning the others into ``0.0``, ``1.0`` in a CSV."""


def _nullable_integers(frame: pd.DataFrame) -> pd.DataFrame:
    """:data:`INTEGER_ID_COLUMNS` of ``frame`` as ``Int64`` where every value is a whole number or missing."""
    for column in INTEGER_ID_COLUMNS:
        if column not in frame.columns or str(frame[column].dtype) == "Int64":
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        present = frame[column].notna()
        if values[present].isna().any() or not np.all(np.mod(values[present].to_numpy(dtype=float), 1) == 0):
            continue  # text or fractions: leave the column as it is
        frame[column] = values.astype("Int64")
    return frame


def _key_part(value: Any) -> Any:
    """Normalise one key value so that a value read back from CSV/JSON equals the one produced."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return str(value)


def row_key(ids: Mapping[str, Any]) -> tuple:
    """Resume key of a row: ``(path,)``, plus the shard ``key`` and the video ``frame`` when set.

    A ``key`` is compared as text: a Parquet row number and a tar key such as ``000010003`` then
    read back from any output format as they were produced.
    """
    parts = []
    for column in KEY_COLUMNS:
        part = _key_part(ids[column]) if column in ids else None
        if part is not None:  # an empty frame read back as NaN counts as absent
            parts.append(str(part) if column == "key" else part)
    return tuple(parts)


def build_score_table(
    ids: Sequence[Mapping[str, Any]],
    raw: np.ndarray,
    errors: Sequence[str | None],
    keys: Sequence[str],
    neutral_mean: Sequence[float] | np.ndarray,
) -> pd.DataFrame:
    """Assemble the output table from identifier dicts and raw head outputs ``(N, H)``.

    Rows without scores (decode error, no face found) carry NaN in ``raw``; they keep NaN scores,
    empty ``top*`` and their ``error`` message (``None`` for "nothing to score").
    """
    raw = np.asarray(raw, dtype=np.float64).reshape(len(ids), len(keys))
    emotion_index = [i for i, k in enumerate(keys) if k in EMOTION_KEYS]
    emotion_keys = [keys[i] for i in emotion_index]
    centred, probs = postprocess_scores(raw, neutral_mean, emotion_index)
    id_frame = pd.DataFrame.from_records(list(ids)) if ids else pd.DataFrame({"path": pd.Series([], dtype=object)})
    id_frame = _nullable_integers(id_frame)
    scored = ~np.isnan(raw).any(axis=1)
    top = np.full((len(ids), TOP_K), None, dtype=object)
    if emotion_index and scored.any():
        order = np.argsort(-centred[:, emotion_index], axis=1, kind="stable")[:, :TOP_K]
        top[scored, : order.shape[1]] = np.asarray(emotion_keys, dtype=object)[order[scored]]
    # Block-wise: one float block for the 128 score columns (not 128 single-column Series): the
    # table is built per request by the HTTP server, where per-column work cost more than the model.
    numbers = np.concatenate([centred, probs, raw], axis=1)
    index = pd.RangeIndex(len(ids))
    id_frame.index = index
    top_names, score_names = _score_column_names(tuple(keys))
    parts = [
        id_frame,
        pd.DataFrame(top, columns=top_names, index=index),
        pd.DataFrame(numbers, columns=score_names, index=index),
        pd.DataFrame({"error": np.array([e if e else None for e in errors], dtype=object)}, index=index),
    ]
    return pd.concat(parts, axis=1)


@functools.lru_cache(maxsize=8)
def _score_column_names(keys: tuple[str, ...]) -> tuple[pd.Index, pd.Index]:
    """``top1..top3`` and the score column names (``key``, ``prob.key``, ``raw.key``), built once per
    set of heads (an index of 128 names costs as much to build as the scores themselves)."""
    emotion_keys = [k for k in keys if k in EMOTION_KEYS]
    scores = [*keys, *(f"prob.{k}" for k in emotion_keys), *(f"raw.{k}" for k in keys)]
    return pd.Index([f"top{k + 1}" for k in range(TOP_K)]), pd.Index(scores)


def summary_columns(table: pd.DataFrame) -> list[str]:
    """The columns worth showing in a terminal: ids, top emotions, the extra dimensions, error."""

    score_start = table.columns.get_loc("top1") if "top1" in table.columns else len(table.columns)
    ids = [c for c in table.columns[:score_start] if not str(c).startswith("eye_")]  # landmarks: files only
    extras = [k for k in EXTRA_KEYS if k in table.columns]
    return [*ids, "top1", "top2", "top3", *extras, "error"]


ERRORS_SHOWN = 5
"""Failed rows a run's summary names (the rest are in the output's ``error`` column)."""


def keep_errors(kept: list[str], table: pd.DataFrame, limit: int = ERRORS_SHOWN) -> int:
    """Append the ``error`` of ``table``'s failed rows to ``kept`` until it holds ``limit`` (each
    message names its input: what a summary shows); returns how many rows of ``table`` failed."""
    if "error" not in table.columns:
        return 0
    failed = table["error"].dropna()
    kept.extend(str(e) for e in failed.iloc[: max(limit - len(kept), 0)])
    return len(failed)


def written_errors(path: str | Path, limit: int = ERRORS_SHOWN) -> list[str]:
    """The ``error`` of the first ``limit`` failed rows of a written table: a file, or a folder of
    Parquet part files (``--engine ray``'s output)."""
    path = Path(path)
    table = pd.read_parquet(path, columns=["error"]) if path.is_dir() else read_table(path)
    kept: list[str] = []
    keep_errors(kept, table, limit)
    return kept

# --- reading back ------------------------------------------------------------------------------
def read_table(path: str | Path) -> pd.DataFrame:
    """Read a score table written by any writer (Parquet parts of an unfinished run included)."""
    path = Path(path)
    suffix = path.suffix.lower()
    frames: list[pd.DataFrame] = []
    try:
        if suffix in (".csv", ".jsonl"):
            text = _complete_lines(path)
            if text.strip():
                buffer = io.StringIO(text)
                frames.append(
                    pd.read_csv(buffer, dtype={"key": str}) if suffix == ".csv" else pd.read_json(buffer, lines=True, dtype=False)
                )
        elif suffix == ".parquet":
            if path.is_file():
                frames.append(pd.read_parquet(path))
            frames.extend(pd.read_parquet(p) for p in ParquetWriter.part_files(path))
        else:
            raise InputError(f"{path}: unknown table format; use .csv, .parquet or .jsonl")
    except (ValueError, OSError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: cannot read the existing output ({exc}); remove it or drop --resume") from None
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    return _nullable_integers(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])


def _complete_lines(path: Path) -> str:
    """The file's text up to its last newline: a partial line left by a killed run is ignored."""
    if not path.is_file():
        return ""
    data = path.read_bytes()
    return data[: data.rfind(b"\n") + 1].decode("utf-8")


def done_keys(path: str | Path) -> set[tuple]:
    """Resume keys (see :func:`row_key`) of every row already in an output file."""
    table = read_table(path)
    if table.empty or "path" not in table.columns:
        return set()
    cols = [c for c in KEY_COLUMNS if c in table.columns]
    return {row_key(dict(zip(cols, values))) for values in table[cols].itertuples(index=False, name=None)}


# --- writers -------------------------------------------------------------------------------------
class ScoreWriter:
    """Append batches of rows to one output file. Use as a context manager; ``close`` finalises.

    The file is claimed (:func:`~emonet_face.runfolder.claim_output`) while the writer is open; an
    ``OSError`` in opening, writing or closing it becomes an :class:`~emonet_face.errors.OutputError`
    naming it and ending with ``then`` (what to do next). Subclasses implement :meth:`_open`,
    :meth:`_write` and :meth:`_close`.
    """

    def __init__(self, path: str | Path, *, resume: bool = False, then: str = RESUME_HINT) -> None:
        self.path = Path(path)
        self.resume = resume
        self.columns: list[str] | None = None
        self.columns_from_file = False  # set where --resume took the columns from an existing output
        self.rows_written = 0
        self.claim = claim_output(self.path, then=then).acquire()  # before anything touches the file
        try:
            with self.claim.errors():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._open()
        except BaseException:
            self.claim.release()
            raise

    def _open(self) -> None:
        """Prepare the file for the first batch (the output is claimed already)."""

    def _align(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The first batch (or the existing file) fixes the columns; later batches are aligned to them."""
        if self.columns is None:
            self.columns = list(frame.columns)
            return frame
        extra = [c for c in frame.columns if c not in self.columns]
        if extra and self.columns_from_file:
            raise InputError(
                f"{self.path}: the existing output lacks the columns {extra} that this run writes (it was made by an "
                "older version or with other options); write to a new file, or rerun without --resume"
            )
        if extra:
            raise InputError(
                f"{self.path}: new columns {extra} appeared mid-run; sources must emit the same id columns on every row"
            )
        return frame.reindex(columns=self.columns)

    def write(self, frame: pd.DataFrame) -> None:
        """Append the rows of ``frame``: all of them or, when writing fails, none."""
        with self.claim.errors():
            self._write(frame)
        self.rows_written += len(frame)

    def _write(self, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finalise the file and release it (safe to call twice)."""
        try:
            with self.claim.errors():
                self._close()
        finally:
            self.claim.release()

    def _close(self) -> None:
        """Finalise the file (no-op for append-only formats)."""

    def __enter__(self) -> ScoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cut_partial_last_line(path: Path) -> None:
    """A kill mid-write can leave a partial last line: drop it so appends stay well-formed."""
    size = path.stat().st_size
    if not size:
        return
    with path.open("rb+") as fh:
        fh.seek(max(0, size - 1))
        if fh.read(1) == b"\n":
            return
        block = 1 << 16
        end = size
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            chunk = fh.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                return
            end = start
        fh.truncate(0)


class _AppendWriter(ScoreWriter):
    def _open(self) -> None:
        if self.resume and self.path.is_file():
            _cut_partial_last_line(self.path)
            self.columns = self._existing_columns()
            self.columns_from_file = self.columns is not None
        self._fh = self.path.open("a" if self.resume else "w", encoding="utf-8", newline="")

    def _existing_columns(self) -> list[str] | None:
        raise NotImplementedError

    def _format(self, frame: pd.DataFrame, header: bool) -> str:
        raise NotImplementedError

    def _write(self, frame: pd.DataFrame) -> None:
        header = self.columns is None
        frame = self._align(frame)
        # One write() call per batch: a killed process never stops inside it, so a batch (all faces
        # of an image, all frames of a video segment) is on disk whole or not at all.
        data = self._format(frame, header).encode("utf-8")
        self._fh.flush()
        fd = self._fh.fileno()
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError:  # disk full mid-batch: take the batch back whole (truncating frees, so it works)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
            if header:
                self.columns = None  # the header went with it
            raise

    def _close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class CsvWriter(_AppendWriter):
    def _existing_columns(self) -> list[str] | None:
        with self.path.open(encoding="utf-8") as fh:
            header = fh.readline()
        return list(pd.read_csv(self.path, nrows=0).columns) if header.strip() else None

    def _format(self, frame: pd.DataFrame, header: bool) -> str:
        return frame.to_csv(index=False, header=header, lineterminator="\n")


class JsonlWriter(_AppendWriter):
    def _existing_columns(self) -> list[str] | None:
        with self.path.open(encoding="utf-8") as fh:
            first = fh.readline()
        return list(json.loads(first)) if first.strip() else None

    def _format(self, frame: pd.DataFrame, header: bool) -> str:
        text = frame.to_json(orient="records", lines=True, force_ascii=False, double_precision=15)
        return text if text.endswith("\n") or not text else text + "\n"


class ParquetWriter(ScoreWriter):
    """Parquet via complete part files, finalised atomically on :meth:`close` (see module doc)."""

    def __init__(
        self, path: str | Path, *, resume: bool = False, metadata: Mapping[str, Any] | None = None, then: str = RESUME_HINT
    ) -> None:
        self.metadata = metadata
        self.parts_dir = self.parts_dir_for(Path(path))
        super().__init__(path, resume=resume, then=then)

    def _open(self) -> None:
        if not self.resume:
            shutil.rmtree(self.parts_dir, ignore_errors=True)
        existing = read_table(self.path) if self.resume else pd.DataFrame()
        if len(existing.columns):
            self.columns = list(existing.columns)
            self.columns_from_file = True
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self._next = len(self.part_files(self.path))
        self._closed = False

    @staticmethod
    def parts_dir_for(path: Path) -> Path:
        return path.with_name(path.name + ".parts")

    @classmethod
    def part_files(cls, path: Path) -> list[Path]:
        folder = cls.parts_dir_for(Path(path))
        return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []

    def _write(self, frame: pd.DataFrame) -> None:
        frame = self._align(frame)
        with atomic_path(self.parts_dir / f"part-{self._next:06d}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
        self._next += 1

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        frames: list[pd.DataFrame] = []
        if self.resume and self.path.is_file():
            frames.append(pd.read_parquet(self.path))
        frames.extend(pd.read_parquet(p) for p in self.part_files(self.path))
        frames = [f for f in frames if len(f)]
        if frames or not self.path.is_file():
            table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=self.columns or [])
            if self.columns:
                table = table.reindex(columns=self.columns)
            with atomic_path(self.path) as tmp:
                _write_parquet(table, tmp, self.metadata)
        shutil.rmtree(self.parts_dir, ignore_errors=True)


def _write_parquet(table: pd.DataFrame, path: Path, metadata: Mapping[str, Any] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    if metadata:
        text = json.dumps(metadata, default=str).encode()
        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), METADATA_KEY: text})
    pq.write_table(arrow, path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``emonet_face`` schema metadata of a Parquet score table (``{}`` when absent)."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


_WRITERS: dict[str, type[ScoreWriter]] = {".csv": CsvWriter, ".jsonl": JsonlWriter, ".parquet": ParquetWriter}


def check_output_suffix(path: str | Path) -> Path:
    """``path`` as a :class:`Path` when its suffix names a score-table format, else the one-line error
    (every command checks ``--out`` with this before any work starts)."""
    path = Path(path)
    if path.suffix.lower() not in _WRITERS:
        raise InputError(f"{path}: unknown output format {path.suffix!r}; use one of {', '.join(OUTPUT_SUFFIXES)}")
    return path


def open_writer(
    path: str | Path, *, resume: bool = False, metadata: Mapping[str, Any] | None = None, then: str = RESUME_HINT
) -> ScoreWriter:
    """A writer chosen by the file suffix (``.csv``, ``.parquet``, ``.jsonl``). ``metadata`` is
    kept where the format has room for it (Parquet schema metadata); ``then`` ends a write error's
    message (what to do next: by default, rerun with ``--resume``)."""
    path = check_output_suffix(path)
    writer = _WRITERS[path.suffix.lower()]
    if writer is ParquetWriter:
        return ParquetWriter(path, resume=resume, metadata=metadata, then=then)
    return writer(path, resume=resume, then=then)


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """Write a whole table at once (through the same writers, so the formats match)."""
    with open_writer(path) as writer:
        writer.write(table)


def iter_written(path: str | Path, frames: Iterable[pd.DataFrame], *, resume: bool = False) -> int:
    """Write every frame as it arrives; returns the number of rows written. The writer is
    finalised even when iteration is interrupted (Ctrl-C), so a Parquet output is readable."""
    with open_writer(path, resume=resume) as writer:
        for frame in frames:
            writer.write(frame)
        return writer.rows_written

