"""The embedding store: embed a dataset once, train and score from it many times.

Layout of a store folder::

    manifest.json          encoder (id, revision, normalisation, preprocessing), dim, heads, count, shards
    part-00000.parquet     id, embedding fixed_size_list<float32>[D], ratings / votes_yes / votes_no
    part-00001.parquet     fixed_size_list[44] (head order in manifest["heads"]), metadata string columns

Resumable shard by shard: each shard is written to a temporary name and renamed atomically, then
the manifest is rewritten (also atomically). On ``resume`` the shards on disk are the truth: their
ids are skipped, stray temporary files are deleted, so a killed run neither duplicates nor loses
rows. Reading memory-maps every shard with pyarrow and views the embedding column as a float32
``(N, D)`` matrix without parsing.
"""

from __future__ import annotations

import json
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from emonet_face.data.samples import Sample
from emonet_face.errors import EmoNetError, InputError
from emonet_face.runfolder import (
    ManifestFormat,
    atomic_path,
    check_out_folder,
    claim_output,
    remove_temporaries,
    require_new_folder,
    versions,
)
from emonet_face.taxonomy import HEAD_KEYS

__all__ = [
    "MANIFEST",
    "StoreTargets",
    "is_store",
    "read_manifest",
    "read_store",
    "read_store_targets",
    "write_embeddings",
    "write_store",
]

MANIFEST = "manifest.json"
FORMAT_NAME = "emonet-face-embedding-store"
FORMAT_VERSION = 1
STORE_FORMAT = ManifestFormat(
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    "an embedding store",
    "embedding store",
    hint="create one with `emonet-face embed`",
    redo="embed the dataset again into a new --out",
)
SHARD_PATTERN = "part-{:05d}.parquet"
RESERVED = ("id", "embedding", "ratings", "votes_yes", "votes_no")


def is_store(path: str | Path) -> bool:
    """True when ``path`` is an embedding-store folder (has our ``manifest.json``)."""
    return STORE_FORMAT.is_in(path)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The store's manifest; a one-line :class:`InputError` for a folder that is no (readable) store."""
    return STORE_FORMAT.read(path)


def _shard_files(path: Path) -> list[Path]:
    return sorted(path.glob("part-*.parquet"))


def _list_matrix(table: pa.Table, column: str, dtype: np.dtype) -> np.ndarray:
    """A fixed_size_list column as an ``(N, width)`` array; zero-copy when it is one chunk."""
    chunked = table.column(column)
    width = chunked.type.list_size
    parts = []
    for chunk in chunked.chunks:
        flat = chunk.flatten() if chunk.offset else chunk.values
        parts.append(flat.to_numpy(zero_copy_only=False).reshape(-1, width))
    if not parts:
        return np.empty((0, width), dtype=dtype)
    matrix = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return matrix if matrix.dtype == dtype else matrix.astype(dtype)


def _read_matrix(path: Path, column: str, dtype: np.dtype) -> np.ndarray:
    """Memory-map every shard and stack one list column into a single ``(N, width)`` array."""
    shards = _shard_files(path)
    matrices = [_list_matrix(pq.read_table(s, columns=[column], memory_map=True), column, dtype) for s in shards]
    if not matrices:
        width = int(read_manifest(path).get("dim", 0)) if column == "embedding" else len(HEAD_KEYS)
        return np.empty((0, width), dtype=dtype)
    return matrices[0] if len(matrices) == 1 else np.concatenate(matrices)


def read_store(path: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Embeddings ``(N, D)`` float32 and a DataFrame of ``id`` + metadata columns, rows aligned."""
    path = Path(path)
    manifest = read_manifest(path)
    embeddings = _read_matrix(path, "embedding", np.dtype(np.float32))
    meta_columns = ["id", *manifest.get("metadata_fields", [])]
    frames = [pq.read_table(s, columns=meta_columns, memory_map=True).to_pandas() for s in _shard_files(path)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=meta_columns)
    if len(frame) != len(embeddings):
        raise InputError(f"{path}: shards disagree on row counts; re-run `emonet-face embed --resume`")
    return embeddings, frame


@dataclass
class StoreTargets:
    """Training targets of a store, head columns in ``keys`` order."""

    keys: tuple[str, ...]
    ratings: np.ndarray
    """``(N, H)`` float32 mean ratings, NaN where missing."""
    votes_yes: np.ndarray
    """``(N, H)`` int counts of yes votes."""
    votes_no: np.ndarray


def read_store_targets(path: str | Path) -> StoreTargets:
    path = Path(path)
    manifest = read_manifest(path)
    return StoreTargets(
        keys=tuple(manifest.get("heads", HEAD_KEYS)),
        ratings=_read_matrix(path, "ratings", np.dtype(np.float32)),
        votes_yes=_read_matrix(path, "votes_yes", np.dtype(np.int16)).astype(np.int32),
        votes_no=_read_matrix(path, "votes_no", np.dtype(np.int16)).astype(np.int32),
    )


# --- writing --------------------------------------------------------------------------------------


def _fixed_type(value_type: pa.DataType, width: int) -> pa.DataType:
    """Non-nullable fixed-size lists: Parquet then stores no definition levels and decodes the
    embedding column about 3× faster (missing ratings are NaN, not null)."""
    return pa.list_(pa.field("item", value_type, nullable=False), width)


def _fixed_array(matrix: np.ndarray, value_type: pa.DataType) -> pa.Array:
    matrix = np.ascontiguousarray(matrix)
    values = pa.array(matrix.reshape(-1), type=value_type)
    return pa.FixedSizeListArray.from_arrays(values, type=_fixed_type(value_type, matrix.shape[1]))


def _schema(dim: int, metadata_fields: Sequence[str]) -> pa.Schema:
    n_heads = len(HEAD_KEYS)
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("embedding", _fixed_type(pa.float32(), dim), nullable=False),
            pa.field("ratings", _fixed_type(pa.float32(), n_heads), nullable=False),
            pa.field("votes_yes", _fixed_type(pa.int16(), n_heads), nullable=False),
            pa.field("votes_no", _fixed_type(pa.int16(), n_heads), nullable=False),
            *[pa.field(f, pa.string()) for f in metadata_fields],
        ]
    )


def _write_shard(table: pa.Table, path: Path) -> None:
    """Embeddings PLAIN-encoded and uncompressed (random floats do not compress; decoding is then a
    copy, which is what makes reading fast); everything else dictionary-encoded + zstd."""
    lists = ["embedding", "ratings", "votes_yes", "votes_no"]
    pq.write_table(
        table,
        path,
        compression={name: ("none" if name == "embedding" else "zstd") for name in table.column_names},
        use_dictionary=[name for name in table.column_names if name not in lists],
        write_statistics=["id"],
    )


class _ShardBuffer:
    def __init__(self, dim: int, metadata_fields: Sequence[str]) -> None:
        self.dim = dim
        self.fields = tuple(metadata_fields)
        self.clear()

    def clear(self) -> None:
        self.ids: list[str] = []
        self.embeddings: list[np.ndarray] = []
        self.ratings: list[np.ndarray] = []
        self.yes: list[np.ndarray] = []
        self.no: list[np.ndarray] = []
        self.meta: dict[str, list[str | None]] = {f: [] for f in self.fields}

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, sample: Sample, embedding: np.ndarray) -> None:
        head_index = {k: i for i, k in enumerate(HEAD_KEYS)}
        ratings = np.full(len(HEAD_KEYS), np.nan, dtype=np.float32)
        yes = np.zeros(len(HEAD_KEYS), dtype=np.int16)
        no = np.zeros(len(HEAD_KEYS), dtype=np.int16)
        value: float | str | None  # a rating, then a metadata field
        for key, value in sample.ratings.items():
            ratings[head_index[key]] = value
        for key, (y, n) in sample.votes.items():
            yes[head_index[key]], no[head_index[key]] = y, n
        self.ids.append(sample.id)
        self.embeddings.append(np.asarray(embedding, dtype=np.float32))
        self.ratings.append(ratings)
        self.yes.append(yes)
        self.no.append(no)
        for f in self.fields:
            value = sample.metadata.get(f)
            self.meta[f].append(None if value is None else str(value))

    def table(self) -> pa.Table:
        arrays = [
            pa.array(self.ids, type=pa.string()),
            _fixed_array(np.stack(self.embeddings), pa.float32()),
            _fixed_array(np.stack(self.ratings), pa.float32()),
            _fixed_array(np.stack(self.yes), pa.int16()),
            _fixed_array(np.stack(self.no), pa.int16()),
            *[pa.array(self.meta[f], type=pa.string()) for f in self.fields],
        ]
        return pa.Table.from_arrays(arrays, schema=_schema(self.dim, self.fields))


Embedder = Callable[
    [set[str], Callable[[Iterable[Sample]], Iterable[Sample]], Callable[[int], None]],
    Iterable[tuple[list[Sample], "np.ndarray | None", list[dict[str, str]]]],
]
"""An engine that embeds a dataset for :func:`write_store`: called with the ids already in the store
(skip them), the id de-duplication to apply in dataset order, and a progress callback; yields
``(samples, features (N, D) or None, skipped [{id, error}])`` in dataset order."""


def _unique_ids(samples: Iterable[Sample]) -> Iterable[Sample]:
    """Make repeated ids unique deterministically (``id#2``…), so resume-by-id never drops a row."""
    seen: dict[str, int] = {}
    for sample in samples:
        count = seen.get(sample.id, 0) + 1
        seen[sample.id] = count
        if count > 1:
            sample.id = f"{sample.id}#{count}"
        yield sample


def write_store(
    dataset: Any,
    out: str | Path,
    encoder: Any,
    *,
    batch_size: int = 32,
    shard_size: int = 4096,
    num_workers: int = 0,
    resume: bool = False,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Embed every sample of ``dataset`` with ``encoder`` into the store at ``out``; returns the manifest.

    Images are decoded and preprocessed in ``num_workers`` threads (0: inline) while the encoder
    runs; unreadable images are skipped, listed in the manifest (``skipped``) and retried on resume.
    ``on_batch`` is called with the number of rows written so far (tests use it to simulate a kill).
    ``embedder`` replaces the local loop (e.g. the Ray engine): ``encoder`` is then only asked to
    ``describe()`` itself, and the store layout, manifest and resume rules stay the same.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    description = json.loads(json.dumps(encoder.describe(), default=_jsonable))
    fields = tuple(f for f in dataset.metadata_fields if f not in RESERVED)
    with claim_output(out):  # one writer per store; a write error (disk full) names the store
        shards, done_ids, fields = _resume_state(out, resume, description, fields)
        out.mkdir(parents=True, exist_ok=True)
        dim = int(description.get("dim") or encoder.dim)
        manifest = _store_manifest(description, dim, {"source": dataset.name, "kind": dataset.kind}, fields, shards)
        total = len(dataset) if hasattr(dataset, "__len__") else None
        bar = tqdm(total=total, desc=f"embed → {out.name}", unit="img", disable=not progress)
        store = _StoreWriter(out, manifest, shard_size, bar, on_batch)
        try:
            if embedder is not None:
                for good, features, errors in embedder(done_ids, _unique_ids, bar.update):
                    store.absorb(good, features, errors)
            else:
                _embed_locally(dataset, encoder, store, done_ids, batch_size, num_workers)
            store.flush()
        finally:
            bar.close()
        return store.finish()


def _resume_state(
    out: Path, resume: bool, description: dict[str, Any], fields: tuple[str, ...]
) -> tuple[list[dict[str, Any]], set[str], tuple[str, ...]]:
    """What a resumed store already holds: its shards, their ids and its metadata fields (the run's own
    ``fields`` for a new store). Refuses another encoder; deletes what a killed run left half-written."""
    if not check_out_folder(out, resume=resume):
        return [], set(), fields
    previous = STORE_FORMAT.read(out, hint="cannot resume into it")
    if _encoder_identity(previous.get("encoder", {})) != _encoder_identity(description):
        raise InputError(
            f"{out}: store was made with encoder {previous.get('encoder', {}).get('encoder')!r}; "
            f"resume with the same --encoder/--revision (got {description.get('encoder')!r})"
        )
    remove_temporaries(out)
    shards, done_ids = [], set()
    for shard in _shard_files(out):
        ids = pq.read_table(shard, columns=["id"]).column("id").to_pylist()
        done_ids.update(ids)
        shards.append({"file": shard.name, "rows": len(ids)})
    return shards, done_ids, tuple(previous.get("metadata_fields", fields))


def _store_manifest(
    encoder: dict[str, Any],
    dim: int,
    dataset: dict[str, str],
    fields: Sequence[str],
    shards: list[dict[str, Any]],
    *,
    complete: bool = False,
) -> dict[str, Any]:
    return {
        **STORE_FORMAT.header(),
        "encoder": encoder,
        "dim": dim,
        "dataset": dataset,
        "heads": list(HEAD_KEYS),
        "metadata_fields": list(fields),
        "shards": shards,
        "count": sum(s["rows"] for s in shards),
        "skipped": [],
        "complete": complete,
        "versions": versions("pyarrow"),
    }


class _StoreWriter:
    """The store being written: rows buffered into the next shard, each finished shard renamed into
    place and then recorded in the manifest (rewritten atomically)."""

    def __init__(self, out: Path, manifest: dict[str, Any], shard_size: int, bar: Any, on_batch: Callable[[int], None] | None) -> None:
        self.out = out
        self.manifest = manifest
        self.shard_size = shard_size
        self.bar = bar
        self.on_batch = on_batch
        self.buffer = _ShardBuffer(manifest["dim"], manifest["metadata_fields"])
        self.next_index = max((int(p.stem.split("-")[1]) for p in _shard_files(out)), default=-1) + 1
        self.written = manifest["count"]
        self.save()

    def save(self) -> None:
        STORE_FORMAT.write(self.out, self.manifest)

    def absorb(self, good: list[Sample], features: np.ndarray | None, errors: list[dict[str, str]]) -> None:
        """One batch: its embedded samples, and the unreadable ones (listed in ``skipped``)."""
        self.manifest["skipped"].extend(errors)
        if features is not None:
            for sample, feature in zip(good, features):
                self.buffer.add(sample, feature)
        self.bar.update(len(good) + len(errors))
        self.written += len(good)
        if len(self.buffer) >= self.shard_size:
            self.flush()
        if self.on_batch is not None:
            self.on_batch(self.written)

    def flush(self) -> None:
        if not len(self.buffer):
            return
        name = SHARD_PATTERN.format(self.next_index)
        with atomic_path(self.out / name) as tmp:
            _write_shard(self.buffer.table(), tmp)
        self.manifest["shards"].append({"file": name, "rows": len(self.buffer)})
        self.manifest["count"] += len(self.buffer)
        self.save()
        self.next_index += 1
        self.buffer.clear()

    def finish(self) -> dict[str, Any]:
        self.manifest["complete"] = True
        self.save()
        skipped = self.manifest["skipped"]
        if skipped:
            warnings.warn(
                f"{self.out}: skipped {len(skipped)} unreadable image(s) (listed in {MANIFEST}); "
                f"first: {skipped[0]['error']}",
                stacklevel=3,
            )
        return self.manifest


Prepared = tuple[list[Sample], "dict[str, Any] | None", list[dict[str, str]]]


def _embed_locally(
    dataset: Any, encoder: Any, store: _StoreWriter, done_ids: set[str], batch_size: int, num_workers: int
) -> None:
    """The local engine: batches of samples not yet in the store, decoded and preprocessed in
    ``num_workers`` threads (0: inline) while the encoder runs, handed to ``store`` in dataset order."""
    import torch

    def prepare(batch: list[Sample]) -> Prepared:
        good, images, errors = [], [], []
        for sample in batch:
            try:
                images.append(sample.load_image())
                good.append(sample)
            except EmoNetError as exc:
                errors.append({"id": sample.id, "error": str(exc)})
        return good, (encoder.preprocess(images) if images else None), errors

    def consume(result: Prepared) -> None:
        good, inputs, errors = result
        store.absorb(good, None if inputs is None else encoder(**inputs).detach().cpu().numpy(), errors)

    batches = _batches(dataset, done_ids, batch_size, store.bar)
    pool = ThreadPoolExecutor(max_workers=num_workers) if num_workers > 0 else None
    pending: deque[Future] = deque()
    try:
        with torch.inference_mode():
            for batch in batches:
                if pool is None:
                    consume(prepare(batch))
                    continue
                pending.append(pool.submit(prepare, batch))
                while len(pending) > num_workers + 1:
                    consume(pending.popleft().result())
            while pending:
                consume(pending.popleft().result())
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _batches(dataset: Any, done_ids: set[str], batch_size: int, bar: Any) -> Iterator[list[Sample]]:
    """The samples of ``dataset`` (ids made unique) not in ``done_ids``, ``batch_size`` at a time."""
    batch: list[Sample] = []
    for sample in _unique_ids(dataset):
        if sample.id in done_ids:
            bar.update(1)
            continue
        batch.append(sample)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _jsonable(obj: Any) -> Any:
    """Processor fields such as transformers' ``SizeDict`` → plain JSON (None fields dropped)."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}
    if hasattr(obj, "items"):
        return {str(k): v for k, v in obj.items() if v is not None}
    return str(obj)


def _encoder_identity(description: dict[str, Any]) -> tuple:
    return tuple(description.get(k) for k in ("encoder", "revision", "normalize", "dim", "size", "image_mean"))


def write_embeddings(
    out: str | Path,
    embeddings: np.ndarray,
    *,
    ids: Sequence[str] | None = None,
    ratings: np.ndarray | None = None,
    votes_yes: np.ndarray | None = None,
    votes_no: np.ndarray | None = None,
    metadata: pd.DataFrame | None = None,
    encoder: dict[str, Any] | None = None,
    source: str = "arrays",
    shard_size: int = 65536,
) -> dict[str, Any]:
    """Write precomputed embeddings (and targets in head order) as a store: for embeddings made
    elsewhere, synthetic experiments and benchmarks. Same layout and manifest as :func:`write_store`."""
    out = require_new_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = embeddings.shape
    n_heads = len(HEAD_KEYS)
    ids = [str(i) for i in range(n)] if ids is None else [str(i) for i in ids]
    ratings = np.full((n, n_heads), np.nan, np.float32) if ratings is None else np.asarray(ratings, np.float32)
    votes_yes = np.zeros((n, n_heads), np.int16) if votes_yes is None else np.asarray(votes_yes, np.int16)
    votes_no = np.zeros((n, n_heads), np.int16) if votes_no is None else np.asarray(votes_no, np.int16)
    fields = [] if metadata is None else [str(c) for c in metadata.columns if c not in RESERVED]
    schema = _schema(dim, fields)
    shards = []
    for index, s in enumerate(range(0, n, shard_size)):
        sl = slice(s, min(s + shard_size, n))
        arrays = [
            pa.array(ids[sl], type=pa.string()),
            _fixed_array(embeddings[sl], pa.float32()),
            _fixed_array(ratings[sl], pa.float32()),
            _fixed_array(votes_yes[sl], pa.int16()),
            _fixed_array(votes_no[sl], pa.int16()),
            *[
                pa.array([None if pd.isna(v) else str(v) for v in metadata[f].iloc[sl]], type=pa.string())
                for f in fields
                if metadata is not None  # always: fields come from it
            ],
        ]
        name = SHARD_PATTERN.format(index)
        with atomic_path(out / name) as tmp:
            _write_shard(pa.Table.from_arrays(arrays, schema=schema), tmp)
        shards.append({"file": name, "rows": sl.stop - sl.start})
    encoder = encoder or {"encoder": None, "dim": dim}
    manifest = _store_manifest(encoder, dim, {"source": source, "kind": "arrays"}, fields, shards, complete=True)
    STORE_FORMAT.write(out, manifest)
    return manifest
