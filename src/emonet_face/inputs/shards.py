"""Image shards as inputs: WebDataset tar files and Parquet files holding image bytes.

Web-scale image sets live in shards, not folders: WebDataset tars (img2dataset's layout:
``00000.tar`` holding ``KEY.jpg`` + ``KEY.json`` + ``KEY.txt`` per sample) or Parquet files whose
rows hold image bytes (Hugging Face's image struct ``{bytes, path}`` or a plain binary column).

A shard is never unpacked nor read whole. It is *planned* into :class:`TarSegment` /
:class:`ParquetSegment` refs of at most :data:`SEGMENT_SAMPLES` samples (like a video is split into
segments), so one worker item stays small however large the shard:

* a tar is scanned header by header (``tarfile`` seeks over the member data); a segment keeps the
  byte offsets of its members and reads only those bytes;
* a Parquet segment is a slice of one row group, read with only the image and key columns.

Rows carry ``path`` = the shard file and ``key`` = the sample key (tar: the member name up to its
first dot, as WebDataset groups members; Parquet: the ``id``/``key``/``__key__`` column, else the
row number; always text). A truncated tar keeps the samples before the damage and adds one error row for the
shard (:class:`ShardFailure`).
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from emonet_face.errors import InputError
from emonet_face.inputs.discovery import IMAGE_SUFFIXES, SHARD_SUFFIXES, expand_braces
from emonet_face.taxonomy import HEAD_KEYS

__all__ = [
    "KEY_CANDIDATES",
    "SEGMENT_SAMPLES",
    "SHARD_SUFFIXES",
    "ParquetSegment",
    "ShardFailure",
    "TarSegment",
    "expand_braces",
    "find_image_column",
    "is_shard",
    "iter_segment",
    "iter_tar_records",
    "json_columns",
    "plan_shard",
]

SEGMENT_SAMPLES = 16
"""Samples per work item (as for video segments): bounds the preprocessed tensors one worker item
holds, whatever the shard size."""
KEY_CANDIDATES = ("id", "key", "__key__")
"""Parquet columns used as the sample ``key`` (first found); else the row number."""
_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # WebDataset: key = name up to the first dot of the basename


def is_shard(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SHARD_SUFFIXES


_IMAGE_EXTS = frozenset(s[1:] for s in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class TarSample:
    key: str
    members: tuple[tuple[str, int, int], ...]
    """``(extension, data offset, size)`` of each member of the sample."""


@dataclass(frozen=True)
class TarSegment:
    """Consecutive samples of one tar shard, with the byte ranges of their members."""

    path: Path
    index: int
    samples: tuple[TarSample, ...]


@dataclass(frozen=True)
class ParquetSegment:
    """Rows ``[start, stop)`` of one row group of a Parquet shard (``first_row``: file row of ``start``)."""

    path: Path
    index: int
    row_group: int
    start: int
    stop: int
    first_row: int
    image_column: str
    key_column: str | None


@dataclass(frozen=True)
class ShardFailure:
    """A shard (or its tail) that cannot be read: one error row naming it."""

    path: Path
    index: int
    message: str


Segment = TarSegment | ParquetSegment | ShardFailure


# --- planning -------------------------------------------------------------------------------------
def _scan_tar(path: Path) -> tuple[list[TarSample], str | None]:
    """Samples of a tar from its headers only (member data is seeked over), and why the scan
    stopped early (``None``: the archive ended properly)."""
    size = path.stat().st_size
    samples: list[TarSample] = []
    key: str | None = None
    members: list[tuple[str, int, int]] = []
    problem: str | None = None
    try:
        with tarfile.open(path, "r:") as tar:
            while (info := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # not in typeshed; tarfile keeps every header read, we keep offsets
                if not info.isfile():
                    continue
                if info.offset_data + info.size > size:
                    problem = f"member {info.name} is cut off (truncated tar)"
                    break
                match = _KEY_EXT.match(info.name)
                if match is None:  # no extension: not part of a sample
                    continue
                name, ext = match.group(1), match.group(2)
                if name != key:
                    if key is not None:
                        samples.append(TarSample(key, tuple(members)))
                    key, members = name, []
                members.append((ext.lower(), info.offset_data, info.size))
            end = tar.offset
    except (tarfile.TarError, OSError, EOFError) as exc:
        if not samples and key is None:
            raise InputError(f"{path}: not a readable tar file ({exc}); check the shard") from None
        problem, end = f"unreadable after {len(samples)} sample(s) ({exc})", None
    if problem is None and end is not None:
        with path.open("rb") as fh:  # a proper archive ends with two zero blocks
            fh.seek(end)
            tail = fh.read(1024)
        if len(tail) < 1024 or tail.strip(b"\0"):
            problem = "the archive ends without its end-of-archive blocks (truncated tar)"
    if key is not None and problem is None:
        samples.append(TarSample(key, tuple(members)))
    # a sample cut in the middle by the damage is dropped with the rest: it is not complete
    return samples, problem


def find_image_column(schema: pa.Schema, requested: str | None, path: Path | str) -> str:
    """The image column: ``requested``, else the only HF image struct (``{bytes, path}``) or
    binary column."""
    names = list(schema.names)
    if requested:
        if requested not in names:
            raise InputError(f"{path}: no column {requested!r} (columns: {', '.join(names)}); check --image-column")
        return requested
    found = [f.name for f in schema if _is_image_type(f.type)]
    if len(found) == 1:
        return found[0]
    what = f"several image columns ({', '.join(found)})" if found else "no image column (binary or {bytes, path})"
    raise InputError(f"{path}: {what}; name the one to score with --image-column")


def _is_image_type(kind: pa.DataType) -> bool:
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return True
    return pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0


def _plan_parquet(path: Path, image_column: str | None, segment: int) -> list[ParquetSegment]:
    try:
        meta = pq.ParquetFile(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc}); check the shard") from None
    column = find_image_column(meta.schema_arrow, image_column, path)
    key = next((c for c in KEY_CANDIDATES if c in meta.schema_arrow.names), None)
    out: list[ParquetSegment] = []
    first = 0
    for group in range(meta.num_row_groups):
        rows = meta.metadata.row_group(group).num_rows
        for start in range(0, rows, segment):
            stop = min(rows, start + segment)
            out.append(ParquetSegment(path, len(out), group, start, stop, first + start, column, key))
        first += rows
    return out


def plan_shard(path: str | Path, *, image_column: str | None = None, segment: int = SEGMENT_SAMPLES) -> list[Segment]:
    """Split one shard into segments of at most ``segment`` samples (a problem → a :class:`ShardFailure`)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            return list(_plan_parquet(path, image_column, segment))
        samples, problem = _scan_tar(path)
    except FileNotFoundError:
        return [ShardFailure(path, 0, f"{path}: file not found")]  # as a missing image or video says
    except (InputError, OSError) as exc:
        text = str(exc) if isinstance(exc, InputError) else f"{path}: {exc}"
        return [ShardFailure(path, 0, text)]
    plan: list[Segment] = [
        TarSegment(path, i, tuple(samples[s : s + segment])) for i, s in enumerate(range(0, len(samples), segment))
    ]
    if problem is not None:
        plan.append(ShardFailure(path, len(plan), f"{path}: {problem}; the samples before it were read"))
    return plan


# --- reading --------------------------------------------------------------------------------------
def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def json_columns(paths: Iterable[str | Path], reserved: Sequence[str] = ()) -> dict[str, str]:
    """``json field → column`` carried from the ``.json`` members of tar shards, fixed by the first
    sample of the first tar that has one (every row of a run has the same columns). A field whose
    name is taken (``key``, ``path``, a score column…) becomes ``json.<field>``."""
    taken = {"path", "key", "error", "top1", "top2", "top3", *HEAD_KEYS, *reserved}
    for path in paths:
        if Path(path).suffix.lower() != ".tar":
            continue
        for segment in plan_shard(path, segment=1)[:1]:
            if isinstance(segment, TarSegment):
                for _, record, _ in iter_tar_records(segment):
                    fields = [f for f, v in (record or {}).items() if _scalar(v)]
                    if record is not None:
                        return {f: f"json.{f}" if f in taken or "." in f else f for f in fields}
    return {}


def iter_tar_records(segment: TarSegment) -> Iterator[tuple[str, dict[str, Any] | None, bytes | Exception]]:
    """``(key, parsed .json or None, image bytes | exception)`` per sample of a tar segment, reading
    only the bytes of the members used."""
    with segment.path.open("rb") as fh:
        for sample in segment.samples:
            record: dict[str, Any] | None = None
            image: bytes | Exception | None = None
            for ext, offset, size in sample.members:
                if ext == "json" and record is None:
                    fh.seek(offset)
                    try:
                        loaded = json.loads(fh.read(size))
                    except (UnicodeDecodeError, json.JSONDecodeError):
                        loaded = None
                    record = loaded if isinstance(loaded, dict) else {}
                elif image is None and ext.rsplit(".", 1)[-1] in _IMAGE_EXTS:
                    fh.seek(offset)
                    image = fh.read(size)
                    if len(image) != size:
                        image = InputError(f"{segment.path}[{sample.key}.{ext}]: member cut off (truncated tar)")
            if image is None:
                found = ", ".join(e for e, _, _ in sample.members)
                image = InputError(f"{segment.path}[{sample.key}]: no image member (found {found})")
            yield sample.key, record, image


def iter_segment(segment: Segment, json_map: dict[str, str] | None = None) -> Iterator[tuple[dict[str, Any], Any]]:
    """``(ids, image bytes | exception)`` per sample; ids hold ``key`` and the carried json columns.

    A sample that fails on its own (no image member, unreadable row) yields an exception in place of
    the bytes, so that it becomes one error row and the segment goes on.
    """
    if isinstance(segment, ShardFailure):
        raise InputError(segment.message)
    if isinstance(segment, ParquetSegment):
        yield from _iter_parquet(segment)
        return
    json_map = json_map or {}
    for key, record, image in iter_tar_records(segment):
        fields = {k: v for k, v in (record or {}).items() if _scalar(v)}
        yield {"key": key, **{col: fields.get(f) for f, col in json_map.items()}}, image


def _iter_parquet(segment: ParquetSegment) -> Iterator[tuple[dict[str, Any], Any]]:
    columns = [segment.image_column] + ([segment.key_column] if segment.key_column else [])
    table = pq.ParquetFile(segment.path).read_row_group(segment.row_group, columns=columns)
    table = table.slice(segment.start, segment.stop - segment.start)
    images = table.column(segment.image_column).to_pylist()
    keys = table.column(segment.key_column).to_pylist() if segment.key_column else None
    for i, value in enumerate(images):
        key = keys[i] if keys is not None else segment.first_row + i
        ids = {"key": None if key is None else str(key)}
        data = value.get("bytes") if isinstance(value, dict) else value
        if not data:
            data = InputError(f"{segment.path}[{key}]: no image bytes in column {segment.image_column!r}")
        yield ids, data

