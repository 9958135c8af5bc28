"""Descriptive statistics of an EmoNet-Face dataset (or any dataset in its layouts), streamed shard by shard.

Parquet shards are read with ``ParquetFile.iter_batches(columns=...)`` naming only the label,
demographic and target-emotion columns (and the image struct's ``path`` field when ``--meta`` must be
joined): image bytes are never read. Targets CSVs hold labels only and are read with pandas.

Per image the pass keeps a few short strings and three (40,) boolean rows (yes vote / rating > 0 /
target emotion); every count in ``summary.json`` is a group-by of that frame at the end.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from emonet_face.bench.protocol import json_scalar
from emonet_face.bench.tables import image_id, read_input_table
from emonet_face.data.parquet import HF_DATASETS, IMAGE_COLUMNS, LABEL_COLUMNS, resolve_dataset_shards
from emonet_face.data.samples import LabelParse, label_raters, parse_label
from emonet_face.data.tables import PATH_COLUMNS, read_targets_csv
from emonet_face.errors import InputError
from emonet_face.stats.demographics import (
    FACTORS,
    UNKNOWN,
    DemographicTable,
    demographic_columns,
    load_demographic_table,
)
from emonet_face.taxonomy import EMOTIONS, Emotion, resolve_emotion

__all__ = ["DatasetStats", "balance_index", "dataset_stats", "read_meta"]

EMOTION_NAMES = [e.name for e in EMOTIONS]
_INDEX = {e.key: i for i, e in enumerate(EMOTIONS)}
RAW_DEMOGRAPHICS = ("gender", "age", "ethnicity")
TARGET_COLUMN = "emotion"
DEFINITIONS = {
    "vote": "images with at least one yes vote for the emotion (BINARY layout: expert yes/no votes)",
    "rating": "images where at least one rater gave the emotion a rating > 0 (HQ/BIG layout: 0-7 ratings)",
    "target": "images whose target emotion (the `emotion` column: the emotion the image was generated for) is the emotion",
}


@dataclass
class _Chunk:
    ids: list[str | None]
    raw: pd.DataFrame  # gender / age / ethnicity as found
    target: list[Any]
    annotators: list[int]
    ratings: list[int]
    voted: np.ndarray
    rated: np.ndarray


@dataclass
class DatasetStats:
    """Everything `emonet-face stats DATASET` reports; :meth:`summary` is ``summary.json``."""

    name: str
    layout: str
    images: pd.DataFrame
    """One row per image: ``id``, the 4 factors, ``age`` (raw), ``target``, ``n_annotators``, ``n_ratings``."""
    labelled: pd.DataFrame
    """(images, 40) bool by display name: the image counts for the emotion under ``definition``."""
    definition: str
    rating_counts: dict[str, Counter]
    vote_counts: np.ndarray
    """(40, 2): yes, no."""
    annotator_images: Counter
    unmapped_ethnicity: dict[str, int]
    demographic_source: str
    table: DemographicTable
    warnings: list[str] = field(default_factory=list)

    def counts(self, factor: str) -> pd.Series:
        """Images per value of ``factor``; FairFace groups and age bins all listed (zeros too)."""
        counts = self.images[factor].value_counts()
        order = {"fairface": self.table.fairface_labels, "age_group": [*self.table.age_labels, UNKNOWN]}.get(factor)
        if order is not None:
            counts = counts.reindex(order, fill_value=0)
        return counts.astype(int)

    def emotion_by(self, factor: str) -> pd.DataFrame:
        """(40, values) images labelled with each emotion per value of ``factor``."""
        table = self.labelled.groupby(self.images[factor].to_numpy()).sum().T
        return table.reindex(columns=self.counts(factor).index, fill_value=0).astype(int)

    def balance(self) -> pd.DataFrame:
        rows = {}
        for factor in FACTORS:
            counts = self.counts(factor)
            known = counts.drop(UNKNOWN, errors="ignore")
            design = {"fairface": len(self.table.fairface_groups), "age_group": len(self.table.age_bins)}.get(factor)
            rows[factor] = {
                **balance_index(known.to_numpy()),
                "design_categories": design or int((known > 0).sum()),
                "balance_design": balance_index(known.to_numpy(), design)["balance"],
                "known_share": float(known.sum() / counts.sum()) if counts.sum() else math.nan,
            }
        frame = pd.DataFrame(rows).T
        frame.index.name = "factor"
        return frame

    def summary(self) -> dict[str, Any]:
        n = len(self.images)
        per_image = {}
        for column, label in (("n_annotators", "annotators_per_image"), ("n_ratings", "ratings_per_image")):
            values = self.images[column]
            if values.sum() > 0:
                per_image[label] = {
                    "mean": float(values.mean()),
                    "distribution": {str(k): int(v) for k, v in values.value_counts().sort_index().items()},
                }
        out: dict[str, Any] = {
            "dataset": self.name,
            "layout": self.layout,
            "n_images": n,
            "demographic_source": self.demographic_source,
            "by": {f: {str(k): int(v) for k, v in self.counts(f).items()} for f in FACTORS},
            "per_emotion_definition": DEFINITIONS[self.definition] if self.definition else None,
            "per_emotion": {e: int(v) for e, v in self.labelled.sum().items()} if self.definition else {},
        }
        targets = self.images["target"].dropna()
        if len(targets):
            out["target_emotion"] = {str(k): int(v) for k, v in targets.value_counts().items()}
        if any(self.rating_counts.values()):
            out["rating_distribution"] = {
                e: {_fmt_value(v): int(c) for v, c in sorted(self.rating_counts[e].items())} for e in EMOTION_NAMES
            }
        if self.vote_counts.sum():
            out["vote_distribution"] = {
                e: {"yes": int(self.vote_counts[i, 0]), "no": int(self.vote_counts[i, 1])}
                for i, e in enumerate(EMOTION_NAMES)
            }
        out.update(per_image)
        if self.annotator_images:
            out["annotators"] = {
                "n": len(self.annotator_images),
                "images": {k: int(v) for k, v in sorted(self.annotator_images.items())},
            }

        out["balance"] = {
            f: {k: json_scalar(v) for k, v in row.items()} for f, row in self.balance().to_dict("index").items()
        }
        out["unmapped_ethnicity"] = dict(sorted(self.unmapped_ethnicity.items(), key=lambda kv: -kv[1]))
        out["ethnicity_table"] = self.table.source
        out["warnings"] = list(self.warnings)
        return out


def _fmt_value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def balance_index(counts: np.ndarray, categories: int | None = None) -> dict[str, float]:
    """Normalised Shannon entropy H / log K: 1 = every category equally large, 0 = one category only.

    K = ``categories`` (e.g. FairFace's 7 groups, the design) or the number of non-empty categories.
    """
    counts = np.asarray(counts, dtype=float)
    counts = counts[counts > 0]
    k = categories if categories is not None else len(counts)
    if counts.sum() == 0 or k < 2:
        return {"entropy": math.nan, "balance": math.nan, "categories": len(counts)}
    p = counts / counts.sum()
    entropy = float(-(p * np.log(p)).sum())
    return {"entropy": entropy, "balance": entropy / math.log(k), "categories": len(counts)}


# -- reading -----------------------------------------------------------------------------------------------------


def _struct_demographics(schema: pa.Schema) -> dict[str, str]:
    """Raw demographic name → dotted column path (top-level column, or a field of a struct column)."""
    found: dict[str, str] = {}
    for name in RAW_DEMOGRAPHICS:
        if name in schema.names:
            found[name] = name
    for column in schema:
        if pa.types.is_struct(column.type) and column.name not in IMAGE_COLUMNS:
            for child in column.type:
                if child.name in RAW_DEMOGRAPHICS and child.name not in found:
                    found[child.name] = f"{column.name}.{child.name}"
    return found


def _image_id_column(schema: pa.Schema) -> str | None:
    for name in IMAGE_COLUMNS:
        if name in schema.names:
            field_type = schema.field(name).type
            if pa.types.is_struct(field_type):
                return f"{name}.path" if field_type.get_field_index("path") >= 0 else None
            if pa.types.is_string(field_type) or pa.types.is_large_string(field_type):
                return name
    return None


def _rating_columns(schema: pa.Schema, skip: set[str]) -> dict[str, str]:
    out = {}
    for name in schema.names:
        if name in skip:
            continue
        try:
            item = resolve_emotion(name)
        except KeyError:
            continue
        if isinstance(item, Emotion):
            out[name] = item.key
    return out


def _column(batch: pa.RecordBatch, dotted: str) -> list[Any]:
    parts = dotted.split(".")
    array = batch.column(parts[0])
    for part in parts[1:]:
        array = array.field(part)
    return array.to_pylist()


def _label_rows(labels: list[Any], extra: list[dict[str, Any]] | None) -> Iterator[tuple[LabelParse, list[str]]]:
    """Parse each label (plus top-level rating columns, one rater: the row itself) with its rater names."""
    for i, label in enumerate(labels):
        parse = parse_label(label) if label is not None else LabelParse()
        raters = label_raters(label) if label is not None else []
        if extra:
            parse_label(extra[i], parse)
            if not raters and (parse.ratings or parse.votes):
                raters = ["(rating columns)"]
        yield parse, raters


def _chunk_from_parses(
    ids: list[str | None], raw: pd.DataFrame, target: list[Any], parses: list[tuple[LabelParse, list[str]]], stats: _Acc
) -> _Chunk:
    n = len(parses)
    voted = np.zeros((n, len(EMOTIONS)), dtype=bool)
    rated = np.zeros((n, len(EMOTIONS)), dtype=bool)
    n_ratings = []
    for row, (parse, _) in enumerate(parses):
        count = 0
        for key, values in parse.ratings.items():
            count += len(values)
            e = _INDEX.get(key)
            if e is None:
                continue
            rated[row, e] = max(values) > 0
            stats.ratings[EMOTION_NAMES[e]].update(float(v) for v in values)
        for key, (yes, no) in parse.vote_counts().items():
            count += yes + no
            e = _INDEX.get(key)
            if e is None:
                continue
            voted[row, e] = yes > 0
            stats.votes[e] += (yes, no)
        n_ratings.append(count)
    for _, raters in parses:
        stats.annotators.update(set(raters))
    return _Chunk(ids, raw, target, [len(set(r)) for _, r in parses], n_ratings, voted, rated)


@dataclass
class _Acc:
    ratings: dict[str, Counter] = field(default_factory=lambda: {e: Counter() for e in EMOTION_NAMES})
    votes: np.ndarray = field(default_factory=lambda: np.zeros((len(EMOTIONS), 2), dtype=np.int64))
    annotators: Counter = field(default_factory=Counter)


def _parquet_chunks(
    shards: list[Path], acc: _Acc, batch_rows: int, want_ids: bool, labels: bool = True
) -> Iterator[_Chunk]:
    for shard in shards:
        try:
            parquet = pq.ParquetFile(shard)
            schema = parquet.schema_arrow
        except Exception as exc:
            raise InputError(f"{shard}: not a readable Parquet file ({exc}); re-download it") from None
        label_column = next((c for c in LABEL_COLUMNS if c in schema.names), None) if labels else None
        demographics = _struct_demographics(schema)
        ratings = _rating_columns(schema, {*IMAGE_COLUMNS, *LABEL_COLUMNS, TARGET_COLUMN}) if labels else {}
        id_column = _image_id_column(schema) if want_ids else None
        target = TARGET_COLUMN if TARGET_COLUMN in schema.names else None
        columns = sorted(
            {c.split(".")[0] for c in demographics.values()}
            | set(ratings)
            | {c for c in (label_column, target) if c}
            | ({id_column} if id_column else set())
        )
        if not columns:
            raise InputError(f"{shard}: no label, rating, demographic or emotion column; expected the EmoNet-Face layout")
        row = 0
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            n = batch.num_rows
            raw = pd.DataFrame({name: _column(batch, path) for name, path in demographics.items()}, index=range(n))
            label_values = _column(batch, label_column) if label_column else [None] * n
            extra = None
            if ratings:
                values = {c: _column(batch, c) for c in ratings}
                extra = [{ratings[c]: values[c][i] for c in ratings} for i in range(n)]
            parses = list(_label_rows(label_values, extra))
            ids = _column(batch, id_column) if id_column else [f"{shard.stem}#{row + i}" for i in range(n)]
            yield _chunk_from_parses(ids, raw, _column(batch, target) if target else [None] * n, parses, acc)
            row += n


def _csv_chunk(csv_path: Path, acc: _Acc) -> tuple[_Chunk, str]:
    frame, layout = read_targets_csv(csv_path)
    if layout == "long":
        frame = frame.dropna(subset=["path"])
        if frame.empty:
            raise InputError(f"{csv_path}: CSV has no rows")
        names = {v: _emotion_index(v) for v in pd.unique(frame["emotion"])}
        frame = frame.assign(_e=frame["emotion"].map(names))
        unknown = sorted(str(v) for v, e in names.items() if e is None)
        order = pd.unique(frame["path"])
        index = pd.Index(order)
        n = len(order)
        voted = np.zeros((n, len(EMOTIONS)), dtype=bool)
        rated = np.zeros((n, len(EMOTIONS)), dtype=bool)
        known = frame[frame["_e"].notna()]
        lower = known["value"].astype(str).str.strip().str.lower()
        is_vote = lower.isin(["true", "false", "yes", "no"])
        votes = known[is_vote]
        yes = lower[is_vote].isin(["true", "yes"])
        rows = index.get_indexer(votes["path"])
        cols = votes["_e"].astype(int).to_numpy()
        np.logical_or.at(voted, (rows[yes.to_numpy()], cols[yes.to_numpy()]), True)
        np.add.at(acc.votes, (cols, np.where(yes.to_numpy(), 0, 1)), 1)
        numbers = pd.to_numeric(known["value"][~is_vote], errors="coerce")
        ratings = known[~is_vote].assign(_v=numbers).dropna(subset=["_v"])
        r_rows = index.get_indexer(ratings["path"])
        r_cols = ratings["_e"].astype(int).to_numpy()
        np.logical_or.at(rated, (r_rows, r_cols), ratings["_v"].to_numpy() > 0)
        for (e, v), c in ratings.groupby(["_e", "_v"]).size().items():
            acc.ratings[EMOTION_NAMES[int(e)]][float(v)] += int(c)
        per_image = frame.groupby("path", sort=False)
        n_annot = per_image["annotator"].nunique().reindex(order).to_numpy()
        n_rate = known.groupby("path", sort=False).size().reindex(order, fill_value=0).to_numpy()
        acc.annotators.update(frame.drop_duplicates(["path", "annotator"])["annotator"].astype(str).value_counts().to_dict())
        raw = pd.DataFrame(index=range(n))
        chunk = _Chunk([str(p) for p in order], raw, [None] * n, list(n_annot), list(n_rate), voted, rated)
        warn = f"{csv_path}: ignored rows naming no emotion ({', '.join(unknown[:5])})" if unknown else ""
        return chunk, warn
    path_column = next(c for c in PATH_COLUMNS if c in frame.columns)
    columns = {c: key for c in frame.columns if (key := _emotion_key(c)) is not None}
    labels = [None] * len(frame)
    extra = [{columns[c]: rec[c] for c in columns} for rec in frame[list(columns)].to_dict("records")] if columns else None
    parses = list(_label_rows(labels, extra))
    raw = frame[[c for c in RAW_DEMOGRAPHICS if c in frame.columns]].reset_index(drop=True)
    target = frame[TARGET_COLUMN].tolist() if TARGET_COLUMN in frame.columns and TARGET_COLUMN not in columns else [None] * len(frame)
    return _chunk_from_parses(frame[path_column].astype(str).tolist(), raw, target, parses, acc), ""


def _emotion_index(name: Any) -> int | None:
    key = _emotion_key(name)
    return None if key is None else _INDEX.get(key)


def _emotion_key(name: Any) -> str | None:
    try:
        item = resolve_emotion(str(name))
    except KeyError:
        return None
    return item.key if isinstance(item, Emotion) else None


def _target_name(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    key = _emotion_key(value)
    return EMOTIONS[_INDEX[key]].name if key is not None else str(value).strip()


def read_meta(path: str | Path) -> pd.DataFrame:
    """Per-image demographics: ``image`` (file name) plus the raw ``gender``/``age``/``ethnicity`` found.

    ``path``: a CSV/TSV/JSONL table with an image column (``image``, ``path``, …) and any of those columns
    (or a ``demographics`` dict holding them), or a dataset in the Parquet layouts (a ``.parquet`` file, a
    folder of shards, ``hq``/``binary``/``big`` or a Hub id), streamed without its image bytes.
    """

    text = str(path)
    local = Path(path).expanduser()
    if text.lower() in HF_DATASETS or local.is_dir() or local.suffix.lower() in (".parquet", ".pq") or (
        not local.exists() and text.count("/") == 1 and not text.startswith((".", "/", "~"))
    ):
        shards = resolve_dataset_shards(HF_DATASETS.get(text.lower(), path))
        chunks = list(_parquet_chunks(shards, _Acc(), 4096, want_ids=True, labels=False))
        out = pd.concat([c.raw.assign(image=[image_id(i) for i in c.ids]) for c in chunks], ignore_index=True)
    else:
        frame = read_input_table(local, what="meta file", text_columns=("image", "path", "age"))
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        image_column = next((c for c in ("image", *PATH_COLUMNS, "file_name", "image_path") if c in frame.columns), None)
        if image_column is None:
            raise InputError(f"meta file {path} needs an 'image' column naming each image (found {', '.join(frame.columns)})")
        out = pd.DataFrame({"image": [image_id(v) for v in frame[image_column].tolist()]})
        for name in RAW_DEMOGRAPHICS:
            if name in frame.columns:
                out[name] = frame[name].to_numpy()
        for column in frame.columns:
            cells = [v for v in frame[column].dropna().head(50) if isinstance(v, dict)]
            for name in RAW_DEMOGRAPHICS:
                if cells and name not in out.columns and any(name in v for v in cells):
                    out[name] = [v.get(name) if isinstance(v, dict) else None for v in frame[column]]
    if not any(c in out.columns for c in RAW_DEMOGRAPHICS):
        raise InputError(f"meta file {path} has no demographic column (gender, age, ethnicity)")
    out = out.dropna(subset=["image"]).drop_duplicates("image", keep="first")
    return out.reset_index(drop=True)


def join_meta(ids: Sequence[str | None], meta: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Raw demographics for ``ids`` from :func:`read_meta`'s frame, matched by file name, else by stem
    (the BINARY CSV's bare 5-digit ids). Returns the frame (one row per id) and the number matched."""

    names = [image_id(i) or str(i) for i in ids]
    by_name = meta.set_index("image")
    by_stem = meta.assign(_stem=[Path(n).stem for n in meta["image"]]).drop_duplicates("_stem").set_index("_stem")
    by_stem = by_stem.drop(columns="image")
    joined = by_name.reindex(names).reset_index(drop=True)
    missing = joined.isna().all(axis=1).to_numpy()
    if missing.any():
        fallback = by_stem.reindex([Path(n).stem for n in names]).reset_index(drop=True)
        joined[missing] = fallback[missing]
    return joined, int((~joined.isna().all(axis=1)).sum())


def dataset_stats(
    ref: str | Path,
    *,
    meta: str | Path | None = None,
    table: DemographicTable | None = None,
    revision: str | None = None,
    split: str | None = None,
    batch_rows: int = 4096,
) -> DatasetStats:
    """Stream ``ref`` (``hq``/``binary``/``big``, a Hub id, local Parquet in either documented layout, or a
    targets CSV) and count images per demographic group, per emotion and per group × emotion."""
    table = table or load_demographic_table()
    acc = _Acc()
    warnings: list[str] = []
    text = str(ref)
    path = Path(ref).expanduser()
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
        chunk, warn = _csv_chunk(path, acc)
        chunks = [chunk]
        layout = "csv"
        warnings += [warn] if warn else []
    else:
        source = HF_DATASETS.get(text.lower(), ref)
        shards = resolve_dataset_shards(source, revision=revision, split=split)
        chunks = list(_parquet_chunks(shards, acc, batch_rows, want_ids=meta is not None))
        schema = pq.read_schema(shards[0])
        layout = "parquet (card: image, annotations, demographics)" if "annotations" in schema.names else "parquet (hub)"
    if not chunks or sum(len(c.ids) for c in chunks) == 0:
        raise InputError(f"{text}: no rows")
    ids = [i for c in chunks for i in c.ids]
    raw = pd.concat([c.raw for c in chunks], ignore_index=True)
    source_text = "dataset columns" if any(c in raw.columns for c in RAW_DEMOGRAPHICS) else "none"
    if meta is not None:
        joined, matched = join_meta(ids, read_meta(meta))
        if matched == 0:
            raise InputError(f"meta file {meta}: no image matches an image of {text} by file name or stem")
        if matched < len(ids):
            warnings.append(f"meta file {meta}: {len(ids) - matched} of {len(ids)} images have no row (counted unknown)")
        raw = joined
        source_text = str(meta)
    if source_text == "none":
        warnings.append(f"{text}: no demographic columns (gender, age, ethnicity); every group is 'unknown' (pass --meta)")
    factors, unmapped = demographic_columns(raw, table)
    images = pd.DataFrame({"id": ids})
    images[list(FACTORS)] = factors[list(FACTORS)].to_numpy()
    images["age"] = raw["age"].to_numpy() if "age" in raw.columns else None
    images["target"] = [_target_name(t) for c in chunks for t in c.target]
    images["n_annotators"] = np.concatenate([np.asarray(c.annotators, dtype=np.int64) for c in chunks])
    images["n_ratings"] = np.concatenate([np.asarray(c.ratings, dtype=np.int64) for c in chunks])
    voted = np.concatenate([c.voted for c in chunks])
    rated = np.concatenate([c.rated for c in chunks])
    if acc.votes.sum():
        definition, matrix = "vote", voted
    elif any(acc.ratings.values()):
        definition, matrix = "rating", rated
    elif images["target"].notna().any():
        definition = "target"
        matrix = (images["target"].to_numpy()[:, None] == np.array(EMOTION_NAMES)[None, :])
    else:
        definition, matrix = "", np.zeros_like(voted)
        warnings.append(f"{text}: no votes, ratings or target emotion column; per_emotion is empty")
    if unmapped:
        shown = ", ".join(f"{k!r}×{v}" for k, v in list(unmapped.items())[:5])
        warnings.append(f"ethnicity strings not in {table.source} (counted unknown): {shown}")
    return DatasetStats(
        name=text,
        layout=layout,
        images=images,
        labelled=pd.DataFrame(matrix, columns=EMOTION_NAMES),
        definition=definition,
        rating_counts={e: c for e, c in acc.ratings.items()},
        vote_counts=acc.votes,
        annotator_images=acc.annotators,
        unmapped_ethnicity=unmapped,
        demographic_source=source_text,
        table=table,
        warnings=warnings,
    )
