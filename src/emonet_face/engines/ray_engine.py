"""The Ray Data engine: the stages of :mod:`emonet_face.pipeline`, spread over a cluster.

Plan (driver) → decode + face detection (Ray CPU tasks, :func:`emonet_face.media.prepare_ref`
without preprocessing, so only small uint8 crops travel) → preprocess + encoder + fused heads in an
actor pool (:class:`_Scorer`: one model load per actor, the pipeline's :class:`~emonet_face.pipeline.Scorer`) → the
driver writes Parquet part files. Rows are the rows of the local engine: same stages, same code.

Output folder::

    _manifest.json                  shards (units: inputs, parts, rows, errors, complete), counts,
                                    model options + the encoder's description, backend, versions
    part-00000-000.parquet          rows of unit 0 (a shard; or a run of up to UNIT_FILES plain files)
    part-00001-000.parquet ...

A unit's parts are written (to a hidden temporary name, then renamed) when all its rows are in,
and the manifest (also replaced atomically) then marks it complete. ``resume`` skips complete units
and redoes the others from scratch (their stray parts are deleted first), so a killed run neither
loses nor duplicates rows. ``pandas.read_parquet(OUT)`` reads the folder (files starting with ``_``
or ``.`` are ignored by pyarrow).
"""

from __future__ import annotations

import contextlib
import json
import pickle
import re
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from emonet_face.engines import RayOptions, require_ray
from emonet_face.errors import EmoNetError, InputError
from emonet_face.faces.regions import EYE_COLUMNS
from emonet_face.inputs.shards import is_shard
from emonet_face.media import prepare_ref
from emonet_face.options import ModelOptions
from emonet_face.pipeline import EmoNetFace
from emonet_face.runfolder import (
    ManifestFormat,
    atomic_path,
    check_out_folder,
    claim_output,
    remove_temporaries,
    versions,
)
from emonet_face.runtime import load_encoder, quiet_transformers

__all__ = [
    "MANIFEST",
    "UNIT_FILES",
    "DescribedEncoder",
    "Unit",
    "describe_encoder",
    "plan_units",
    "ray_embedder",
    "ray_predict",
    "ray_session",
]

MANIFEST = "_manifest.json"
FORMAT_NAME = "emonet-face-ray-scores"
_FORMAT = ManifestFormat(
    FORMAT_NAME,
    1,
    MANIFEST,
    "a folder written by --engine ray",
    "Ray output",
    hint="cannot resume into it",
    redo="choose another --out",
)
UNIT_FILES = 1024
"""Plain image files are grouped into units of this many inputs (one part file each); a shard is one unit."""
PART_ROWS = 8192
"""A unit's rows are written in part files of at most this many rows."""
DECODE_TASK = {"num_cpus": 1, "memory": 256 * 1024**2}
"""Resources of a decode task (one segment: 16 decoded images and their crops). Declaring them also
keeps Ray Data from fusing decoding into the encoder actors, where it would run serially."""


def _retry_args(options: RayOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ray's remote arguments for a worker that dies mid-run (``SIGKILL``, out of memory, a lost
    node): ``(decode tasks, encoder actors)``. A dead actor is restarted (it holds nothing but the
    model) and the batches it held are sent again, each at most ``options.retries`` times, like a
    decode task; a batch that kills its worker every time then ends the run instead of looping.
    Set here rather than left to Ray Data's defaults (unbounded retries), which differ between versions."""
    retries = max(0, int(options.retries))
    return {"max_retries": retries}, {"max_restarts": -1, "max_task_retries": retries}


def _with_retries(transform: Callable[..., Any], retries: dict[str, Any], **kwargs: Any) -> Any:
    """``transform(**kwargs)`` (a Ray Data ``map`` / ``flat_map`` / ``map_batches``) with the bounds of
    :func:`_retry_args`. Ray Data takes them only as the remote arguments it deprecates since 2.60 (no
    named parameter replaces them yet); one that no longer takes them keeps its own, unbounded, retries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return transform(**kwargs, **retries)
        except TypeError:
            return transform(**kwargs)


_NUMERIC_IDS = ("frame", "time", "face", "box_x", "box_y", "box_w", "box_h", "det_score", *EYE_COLUMNS)


@dataclass
class Unit:
    """The resume granularity: one shard, or a run of plain files; its planned refs."""

    inputs: list[str]
    refs: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    number: int = -1


def plan_units(paths: Sequence[Path], source: Any) -> list[Unit]:
    """Plan every input with ``source.plan`` (as the local engine does) and group refs into units."""

    units: list[Unit] = []
    loose: Unit | None = None
    for path in paths:
        refs = source.plan({"path": str(path)}, path)
        if is_shard(path):
            units.append(Unit([str(path)], refs))
            continue
        if loose is None or len(loose.inputs) >= UNIT_FILES:
            loose = Unit([], [])
            units.append(loose)
        loose.inputs.append(str(path))
        loose.refs.extend(refs)
    return units


# --- Ray session ----------------------------------------------------------------------------------
class ray_session:
    """Context manager: join ``address`` (``auto``, ``ray://…``), reuse an initialised Ray, or start a
    local one for the run (and stop it after)."""

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self.started = False

    def __enter__(self) -> Any:
        ray = require_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.options.address:
                kwargs["address"] = self.options.address
            else:
                kwargs.update(self.options.init_kwargs or {})
            ray.init(**kwargs)
            self.started = True
        return ray

    def __exit__(self, *exc: object) -> None:
        if self.started:
            require_ray().shutdown()


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: ``__cause__`` and the ``cause`` of Ray's task errors."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        yield cause
        seen.add(id(cause))
        cause = getattr(cause, "cause", None) or cause.__cause__


def _lost_worker(exc: BaseException) -> BaseException | None:
    """The Ray system error in ``exc`` when a worker, an actor, a node or an object was lost (and
    Ray's retries ran out), else ``None``: the run's fault, not its inputs'."""
    import ray.exceptions as rx

    kinds = tuple(
        getattr(rx, name)
        for name in (
            "WorkerCrashedError", "RayActorError", "NodeDiedError", "ObjectLostError", "OutOfMemoryError",
            "LocalRayletDiedError", "RaySystemError",
        )
        if hasattr(rx, name)
    )
    return next((cause for cause in _causes(exc) if isinstance(cause, kinds)), None)


@contextlib.contextmanager
def _user_errors(out: Path | None = None) -> Iterator[None]:
    """A one-line error raised in a Ray worker (e.g. a missing model folder in an actor) reaches the
    user as itself, not wrapped in Ray's task/actor exceptions and remote tracebacks; a worker lost
    for good (its retries spent) becomes one line saying that ``--resume`` continues ``out``."""

    try:
        yield
    except Exception as exc:
        for cause in _causes(exc):
            if isinstance(cause, EmoNetError):
                raise type(cause)(str(cause).splitlines()[0]) from None
        # an actor that failed in its constructor carries the remote error as text only
        found = re.findall(r"emonet_face\.errors\.\w+: (.+)", str(exc))
        if found:
            raise EmoNetError(found[-1].strip()) from None
        lost = _lost_worker(exc)
        if lost is not None and out is not None:
            detail = (str(lost).strip().splitlines() or [""])[0]
            raise EmoNetError(
                f"{out}: a Ray worker was lost and its retries ran out ({type(lost).__name__}: {detail}); "
                "what is written is kept: run the same command with --resume to finish"
            ) from None
        raise


# --- stages (run in Ray workers) ------------------------------------------------------------------
def _prepare_row(row: dict[str, Any], source: Any, expand: Any) -> dict[str, Any]:
    """CPU task: one ref → its items (decoded, faces cropped, not yet preprocessed)."""

    ids, ref = pickle.loads(row["ref"])
    items = prepare_ref(ids, ref, source, None, expand)
    return {"unit": row["unit"], "seq": row["seq"], "items": pickle.dumps(items, protocol=5)}


class _Scorer:
    """Actor: loads the model once (``EmoNetFace.from_pretrained(options=model)``), then
    preprocesses (in ``threads`` threads: one per CPU of the actor, so that a GPU is not starved by
    one thread resizing images), encodes and scores batches of refs with the model's scorer."""

    def __init__(self, model: ModelOptions, batch_size: int, threads: int = 1) -> None:
        self.net = EmoNetFace.from_pretrained(options=model)
        self.batch_size = batch_size
        self.threads = threads
        encoder = self.net.encoder
        self.info = json.dumps(
            {"heads": self.net.heads_ref, "encoder": encoder.describe() if encoder is not None else None},
            default=str,
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        groups = [pickle.loads(payload) for payload in batch["items"]]
        flat = [item for group in groups for item in group]
        self.net.scorer.preprocess(flat, threads=self.threads)
        table = self.net.scorer.score(flat, batch_size=self.batch_size)
        out, start = [], 0
        for group in groups:
            out.append(pickle.dumps(table.iloc[start : start + len(group)].reset_index(drop=True), protocol=5))
            start += len(group)
        return {"unit": batch["unit"], "seq": batch["seq"], "table": out, "info": [self.info] * len(out)}


# --- driver -----------------------------------------------------------------------------------------
class _Parts:
    """Writes a unit's rows as part files with one schema for the whole folder: a column that is
    all-empty in one part (e.g. face boxes of a shard of error rows) takes the type it has elsewhere."""

    def __init__(self, out: Path, schema: pa.Schema | None) -> None:
        self.out = out
        self.schema = schema

    def _arrow(self, frame: pd.DataFrame) -> pa.Table:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.schema is None:
            fields = []
            for f in table.schema:
                kind = f.type
                if pa.types.is_null(kind):
                    kind = pa.float64() if f.name in _NUMERIC_IDS else pa.string()
                fields.append(pa.field(f.name, kind))
            self.schema = pa.schema(fields)
        columns = []
        for f in self.schema:
            if f.name not in table.column_names:
                columns.append(pa.nulls(len(table), f.type))
                continue
            column = table.column(f.name)
            try:
                columns.append(column.cast(f.type, safe=False) if column.type != f.type else column)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                columns.append(column.cast(pa.string()))
        return pa.Table.from_arrays(columns, schema=pa.schema([pa.field(f.name, c.type) for f, c in zip(self.schema, columns)]))

    def write(self, number: int, frame: pd.DataFrame) -> list[str]:
        names = []
        for k, start in enumerate(range(0, max(len(frame), 1), PART_ROWS)):
            name = f"part-{number:05d}-{k:03d}.parquet"
            with atomic_path(self.out / name) as tmp:
                pq.write_table(self._arrow(frame.iloc[start : start + PART_ROWS]), tmp)
            names.append(name)
        return names

    @staticmethod
    def remove(out: Path, number: int) -> None:
        for stale in out.glob(f"part-{number:05d}-*.parquet"):
            stale.unlink()


def ray_predict(
    paths: Sequence[Path],
    out: str | Path,
    *,
    model: ModelOptions,
    source: Any,
    expand: Any = None,
    options: RayOptions | None = None,
    resume: bool = False,
    progress: bool = False,
    on_unit: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Score ``paths`` (files, shards) with the Ray engine into the part folder ``out``; returns the manifest.

    ``model`` is loaded once in every actor.
    ``on_unit`` is called with the number of units finished in this run (tests simulate a kill).
    """
    from tqdm.auto import tqdm

    options = options or RayOptions()
    out = Path(out)
    with claim_output(out):  # one run per folder; a write error (disk full) names the folder
        previous = _open_folder(out, model, resume)
        todo = _units_to_do(plan_units(paths, source), previous, out)
        manifest = _start_manifest(previous, todo, model, options)
        schema = _schema_of(out, manifest)
        _FORMAT.write(out, manifest)
        entries = {tuple(u["inputs"]): u for u in manifest["shards"]}
        rows = [
            {"unit": u, "seq": s, "ref": pickle.dumps(ref, protocol=5)}
            for u, unit in enumerate(todo)
            for s, ref in enumerate(unit.refs)
        ]
        if rows:
            parts = _Parts(out, schema)
            with ray_session(options) as ray, _user_errors(out):
                results = _run(ray, rows, model, source, expand, options, progress, tqdm)
                for finished, (unit, frame, info) in enumerate(results, start=1):
                    _unit_done(manifest, entries[tuple(todo[unit].inputs)], parts.write, frame, info)
                    _FORMAT.write(out, manifest)
                    if on_unit is not None:
                        on_unit(finished)
        manifest["complete"] = all(u.get("complete") for u in manifest["shards"])
        _FORMAT.write(out, manifest)
        return manifest


def _open_folder(out: Path, model: ModelOptions, resume: bool) -> dict[str, Any] | None:
    """Check ``out`` (a new folder, or one this model's run may continue) and return its manifest."""
    if out.suffix.lower() in (".csv", ".jsonl", ".parquet") and not out.is_dir():
        raise InputError(f"{out}: --engine ray writes a folder of Parquet parts; give --out a folder name")
    previous = _FORMAT.read(out) if check_out_folder(out, resume=resume) else None
    out.mkdir(parents=True, exist_ok=True)
    remove_temporaries(out)
    if previous is not None and _identity(previous.get("model", {})) != _identity(model.describe()):
        raise InputError(
            f"{out}: written with model options {previous.get('model')}; resume with the same options "
            "or choose another --out"
        )
    return previous


def _units_to_do(units: list[Unit], previous: dict[str, Any] | None, out: Path) -> list[Unit]:
    """Units not complete in ``previous``, numbered (known units keep their number); their stray parts deleted."""
    known = {tuple(u["inputs"]): u for u in (previous or {}).get("shards", [])}
    next_number = max((u["number"] for u in known.values()), default=-1) + 1
    todo: list[Unit] = []
    unit: Unit | int  # a unit while planning, a unit's index in the results below
    for unit in units:
        entry = known.get(tuple(unit.inputs))
        if entry is not None:
            unit.number = entry["number"]
            if entry.get("complete") and all((out / p).is_file() for p in entry["parts"]):
                continue
        else:
            unit.number = next_number
            next_number += 1
        _Parts.remove(out, unit.number)
        todo.append(unit)
    return todo


def _start_manifest(
    previous: dict[str, Any] | None, todo: list[Unit], model: ModelOptions, options: RayOptions
) -> dict[str, Any]:
    """The run's manifest: the previous one (resume) or a new one, with this run's units not complete."""
    manifest: dict[str, Any] = previous or {**_FORMAT.header(), "command": "predict", "shards": []}
    manifest.update(
        {
            "engine": {"name": "ray", "actors": options.actors, "gpus_per_actor": options.gpus_per_actor},
            "model": model.describe(),
            "backend": model.backend,
            "versions": versions("ray", "pyarrow"),
            "complete": False,
        }
    )
    entries = {tuple(u["inputs"]): u for u in manifest["shards"]}
    for unit in todo:
        entries[tuple(unit.inputs)] = {"number": unit.number, "inputs": unit.inputs, "parts": [], "complete": False}
    manifest["shards"] = sorted(entries.values(), key=lambda u: u["number"])
    _summarise(manifest)
    return manifest


def _unit_done(
    manifest: dict[str, Any], entry: dict[str, Any], write: Callable[[int, pd.DataFrame], list[str]],
    frame: pd.DataFrame, info: str,
) -> None:
    """Write a finished unit's parts and mark it complete in the manifest."""
    entry.update(
        parts=write(entry["number"], frame),
        rows=len(frame),
        errors=int(frame["error"].notna().sum()) if "error" in frame else 0,
        complete=True,
    )
    manifest.setdefault("model_info", json.loads(info))
    # what the actors run ("auto" resolved), as predict's Parquet metadata records it
    manifest["backend"] = manifest["model_info"].get("encoder", {}).get("backend", manifest["backend"])
    _summarise(manifest)


def _identity(model: dict[str, Any]) -> dict[str, Any]:
    """What must not change between a run and its resumption (the device, caches and --force-precision,
    which changes whether an int8 run starts, not its scores, may)."""
    ignored = ("device", "cache_dir", "compiled_dir", "local_files_only", "force_precision")
    return {k: v for k, v in model.items() if k not in ignored}


def _summarise(manifest: dict[str, Any]) -> None:
    done = [u for u in manifest["shards"] if u.get("complete")]
    manifest["count"] = sum(u.get("rows", 0) for u in done)
    manifest["errors"] = sum(u.get("errors", 0) for u in done)


def _schema_of(out: Path, manifest: dict[str, Any]) -> pa.Schema | None:
    """The schema of parts already written (a resumed run keeps it)."""
    for unit in manifest["shards"]:
        for part in unit.get("parts", []):
            if (out / part).is_file():
                return pq.read_schema(out / part).remove_metadata()
    return None


def _scoring_dataset(
    ray: Any, rows: list[dict[str, Any]], model: ModelOptions, source: Any, expand: Any, options: RayOptions
) -> Any:
    """The Ray Data pipeline of a run: decode tasks, then the encoder actors (with bounded retries)."""
    from functools import partial

    decode_retries, actor_retries = _retry_args(options)
    decoded = _with_retries(
        ray.data.from_items(rows).map, decode_retries,
        fn=partial(_prepare_row, source=source, expand=expand), **DECODE_TASK,
    )
    return _with_retries(
        decoded.map_batches, actor_retries,
        fn=_Scorer,
        fn_constructor_kwargs={
            "model": model,
            "batch_size": options.batch_size,
            "threads": max(1, int(options.cpus_per_actor)),
        },
        batch_size=max(1, options.batch_size // 16),  # refs per actor call
        compute=ray.data.ActorPoolStrategy(size=options.actors),
        num_gpus=options.gpus_per_actor or None,
        num_cpus=options.cpus_per_actor,
        batch_format="numpy",
    )


def _run(
    ray: Any,
    rows: list[dict[str, Any]],
    model: ModelOptions,
    source: Any,
    expand: Any,
    options: RayOptions,
    progress: bool,
    tqdm: Any,
) -> Iterator[tuple[int, pd.DataFrame, str]]:
    """Yield ``(unit index, rows, model info)`` per unit as soon as all its refs are scored, each unit
    once (a ref scored twice, e.g. by a retried batch, counts once)."""
    expected: dict[int, int] = {}
    for row in rows:
        expected[row["unit"]] = expected.get(row["unit"], 0) + 1
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # units complete in order: few held in memory
    context.enable_progress_bars = progress
    ds = _scoring_dataset(ray, rows, model, source, expand, options)
    pending: dict[int, dict[int, pd.DataFrame]] = {}
    finished: set[int] = set()
    bar = tqdm(total=len(rows), disable=not progress, unit="ref", desc="scoring (ray)")
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for unit, seq, payload, info in zip(batch["unit"], batch["seq"], batch["table"], batch["info"]):
                unit, seq = int(unit), int(seq)
                if unit in finished or seq in pending.get(unit, {}):
                    continue
                pending.setdefault(unit, {})[seq] = pickle.loads(payload)
                bar.update(1)
                if len(pending[unit]) == expected[unit]:
                    done = pending.pop(unit)
                    finished.add(unit)
                    yield unit, pd.concat([done[s] for s in range(expected[unit])], ignore_index=True), str(info)
    finally:
        bar.close()


# --- embed ------------------------------------------------------------------------------------------
def _read_shard(row: dict[str, Any], dataset: Any, done: Any) -> Iterator[dict[str, Any]]:
    """CPU task: one dataset shard → its samples, decoded (unreadable ones carry their error)."""

    ray = require_ray()
    done_ids = ray.get(done) if done is not None else set()
    for sample in dataset.iter_shard(dataset.shards[row["shard"]]):
        # Skipped by their id as read: exact when ids are unique (``#2`` renaming happens on the
        # driver, in dataset order, so a resumed run over repeated ids may re-embed or skip a repeat).
        if sample.id in done_ids:
            continue
        image, error = None, ""
        try:
            image = sample.load_image()
        except EmoNetError as exc:
            error = str(exc)
        sample.image = None  # the bytes are not needed past decoding
        yield {"shard": row["shard"], "sample": pickle.dumps(sample, protocol=5), "image": pickle.dumps(image), "error": error}


class _Embedder:
    """Actor: loads the encoder once, then preprocesses and encodes batches of decoded samples."""

    def __init__(self, encoder_kwargs: dict[str, Any]) -> None:

        with quiet_transformers():
            self.encoder = load_encoder(**encoder_kwargs)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np
        import torch

        images = [pickle.loads(b) for b in batch["image"]]
        ok = [i for i, image in enumerate(images) if image is not None]
        features = np.full((len(images), self.encoder.dim), np.nan, dtype=np.float32)
        if ok:
            inputs = self.encoder.preprocess([images[i] for i in ok])
            with torch.inference_mode():
                features[ok] = self.encoder.encode(inputs).features.detach().cpu().numpy()
        return {"shard": batch["shard"], "sample": batch["sample"], "error": batch["error"], "embedding": features}


def _embedding_dataset(ray: Any, dataset: Any, done: Any, encoder_kwargs: dict[str, Any], options: RayOptions) -> Any:
    """The Ray Data pipeline of ``embed``: shard-reading tasks, then the encoder actors (bounded retries)."""
    from functools import partial

    decode_retries, actor_retries = _retry_args(options)
    read = _with_retries(
        ray.data.from_items([{"shard": i} for i in range(len(dataset.shards))]).flat_map, decode_retries,
        fn=partial(_read_shard, dataset=dataset, done=done), **DECODE_TASK,
    )
    return _with_retries(
        read.map_batches, actor_retries,
        fn=_Embedder,
        fn_constructor_kwargs={"encoder_kwargs": encoder_kwargs},
        batch_size=options.batch_size,
        compute=ray.data.ActorPoolStrategy(size=options.actors),
        num_gpus=options.gpus_per_actor or None,
        num_cpus=options.cpus_per_actor,
        batch_format="numpy",
    )


def ray_embedder(
    dataset: Any, encoder_kwargs: dict[str, Any], options: RayOptions, out: Path | None = None
) -> Callable[..., Iterator]:
    """An :data:`~emonet_face.data.store.Embedder` for :func:`~emonet_face.data.store.write_store`:
    shards are read and decoded in Ray tasks, encoded in an actor pool, returned in dataset order
    (``out``, the store, is named when a lost worker ends the run)."""
    if not hasattr(dataset, "iter_shard"):
        raise InputError(
            f"{dataset.name}: --engine ray embeds sharded datasets (Parquet or WebDataset .tar shards); "
            "use --engine local for an image folder"
        )

    def run(done_ids: set[str], unique: Callable, progress: Callable[[int], None]) -> Iterator:
        with ray_session(options) as ray, _user_errors(out):
            context = ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True  # the store keeps the dataset order
            done = ray.put(done_ids) if done_ids else None
            ds = _embedding_dataset(ray, dataset, done, encoder_kwargs, options)
            arriving: deque[Any] = deque()
            renamed = unique(iter(arriving.popleft, None))  # one de-duplication over the whole stream
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                arriving.extend(pickle.loads(b) for b in batch["sample"])
                samples = [next(renamed) for _ in range(len(batch["sample"]))]
                done_here = [s.id in done_ids for s in samples]  # repeated ids done under their "#2" name
                good = [i for i, e in enumerate(batch["error"]) if not e and not done_here[i]]
                errors = [{"id": samples[i].id, "error": str(e)} for i, e in enumerate(batch["error"]) if e]
                progress(sum(done_here))
                yield [samples[i] for i in good], batch["embedding"][good] if good else None, errors

    return run


@dataclass
class DescribedEncoder:
    """What :func:`~emonet_face.data.store.write_store` needs from an encoder the driver does not load."""

    description: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(self.description.get("dim") or 0)

    def describe(self) -> dict[str, Any]:
        return self.description


def describe_encoder(encoder_kwargs: dict[str, Any]) -> DescribedEncoder:
    """Load the encoder once in a Ray task (not on the driver) for the store manifest."""
    ray = require_ray()

    def describe() -> dict[str, Any]:

        with quiet_transformers():
            return load_encoder(**{**encoder_kwargs, "device": "cpu"}).describe()

    return DescribedEncoder(ray.get(ray.remote(describe).options(num_cpus=1).remote()))
