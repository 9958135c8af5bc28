"""EmoNet-Face datasets as Hugging Face Parquet shards (``laion/emonet-face-hq|binary|big``).

Rows are streamed shard by shard with ``ParquetFile.iter_batches`` so the dataset never sits in
memory. Shards come from a local folder/file, or from the Hub through ``snapshot_download``
(``repo_type="dataset"``, Parquet files only) with the same offline behaviour as the models.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from emonet_face.data.samples import LabelParse, Sample, parse_label
from emonet_face.errors import InputError
from emonet_face.hub import resolve_model_dir
from emonet_face.taxonomy import EMOTION_KEYS, HEAD_KEYS, resolve_emotion

__all__ = ["HF_DATASETS", "ParquetDataset", "resolve_dataset_shards"]

HF_DATASETS = {
    "hq": "laion/emonet-face-hq",
    "binary": "laion/emonet-face-binary",
    "big": "laion/emonet-face-big",
}
IMAGE_COLUMNS = ("path", "image")
"""The image struct column: ``path`` (the Hub Parquet layout), ``image`` as some dataset cards name it."""
LABEL_COLUMNS = ("label", "annotations", "labels")
METADATA_COLUMNS = ("prompt", "age", "ethnicity", "gender", "emotion", "subset")


def resolve_dataset_shards(
    ref: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    split: str | None = None,
) -> list[Path]:
    """Parquet shards of ``ref``: a ``.parquet`` file, a folder (searched recursively) or a Hub
    dataset id (downloaded, Parquet files only). ``split`` keeps shards whose path mentions it."""
    path = Path(ref).expanduser()
    if path.is_file():
        if path.suffix != ".parquet":
            raise InputError(f"{path}: not a .parquet file")
        return [path]
    if path.is_dir():
        shards = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    else:
        text = str(ref)
        if text.startswith((".", "/", "~")) or text.count("/") != 1:
            raise InputError(f"{text}: dataset not found: not a folder, a .parquet file or a Hub id 'owner/name'")
        shards = sorted(_download(text, revision, cache_dir).rglob("*.parquet"))
    if split:
        shards = [p for p in shards if split in p.relative_to(p.anchor).as_posix()]
    if not shards:
        raise InputError(f"{ref}: no .parquet shards found{f' for split {split!r}' if split else ''}")
    return shards


def _download(repo_id: str, revision: str | None, cache_dir: str | Path | None) -> Path:
    return resolve_model_dir(
        repo_id,
        revision=revision,
        cache_dir=cache_dir,
        allow_patterns=["*.parquet", "**/*.parquet"],
        what="dataset",
        repo_type="dataset",
        error=InputError,
    )


def _guess_kind(name: str) -> str:
    lowered = name.lower()
    for kind in ("binary", "big", "hq"):
        if kind in lowered:
            return kind
    return "auto"


class ParquetDataset:
    """Streams :class:`Sample` rows from EmoNet-Face Parquet shards.

    ``path`` (an image struct ``{bytes, path}``) gives the image and the id (its ``path`` string,
    else ``<shard>#<row>``); ``label`` is parsed by :func:`parse_label`; top-level columns named
    after an emotion (a flattened BIG layout) are read as ratings too; every other scalar column
    (``prompt``, ``age``, ``ethnicity``, ``gender``, ``emotion``, ``subset`` …) is kept as metadata.
    """

    def __init__(
        self,
        ref: str | Path,
        *,
        kind: str | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        split: str | None = None,
        batch_rows: int = 64,
    ) -> None:
        self.name = str(ref)
        self.shards = resolve_dataset_shards(ref, revision=revision, cache_dir=cache_dir, split=split)
        self.kind = kind or _guess_kind(Path(self.name).name)
        self.batch_rows = batch_rows
        try:
            schema = pq.read_schema(self.shards[0])
        except Exception as exc:
            raise InputError(f"{self.shards[0]}: not a readable Parquet file ({exc})") from None
        names = list(schema.names)
        image_column = next((c for c in IMAGE_COLUMNS if c in names), None)
        if image_column is None:
            raise InputError(
                f"{self.shards[0]}: no image column ('path' or 'image'; columns: {', '.join(names)}); "
                "expected the EmoNet-Face Hub layout"
            )
        self.image_column = image_column
        self.label_column = next((c for c in LABEL_COLUMNS if c in names), None)
        special = (image_column, self.label_column)
        self.rating_columns: dict[str, str] = {}
        for column in names:
            if column in (*special, *METADATA_COLUMNS):
                continue
            try:
                self.rating_columns[column] = resolve_emotion(column).key
            except KeyError:
                continue
        # Scalar columns are metadata as they are; struct columns (e.g. a ``demographics`` dict) are
        # flattened into their fields (``ethnicity``, ``gender``, ``age``).
        self._struct_fields: dict[str, tuple[str, str]] = {}
        fields: list[str] = []
        for column in names:
            if column in special or column in self.rating_columns:
                continue
            column_type = schema.field(column).type
            if pa.types.is_struct(column_type):
                for child in column_type:
                    name = child.name if child.name not in names else f"{column}.{child.name}"
                    self._struct_fields[name] = (column, child.name)
                    fields.append(name)
            else:
                fields.append(column)
        self.metadata_fields: tuple[str, ...] = tuple(fields)
        self._rows = sum(pq.ParquetFile(p).metadata.num_rows for p in self.shards)
        self._seen_ratings: Counter[str] = Counter()
        self._seen_votes: Counter[str] = Counter()
        self._unknown: Counter[str] = Counter()
        self._unlabelled = 0
        self._iterated = 0

    def __len__(self) -> int:
        return self._rows

    def __iter__(self) -> Iterator[Sample]:
        self._seen_ratings.clear()
        self._seen_votes.clear()
        self._unknown.clear()
        self._unlabelled = self._iterated = 0
        for shard in self.shards:
            yield from self.iter_shard(shard)

    def iter_shard(self, shard: Path) -> Iterator[Sample]:
        """The samples of one shard (engines read shards in parallel)."""
        try:
            parquet = pq.ParquetFile(shard)
        except Exception as exc:
            raise InputError(f"{shard}: not a readable Parquet file ({exc}); re-download it") from None
        row = 0
        for batch in parquet.iter_batches(batch_size=self.batch_rows):
            columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
            for i in range(batch.num_rows):
                yield self._sample(shard, row, {k: v[i] for k, v in columns.items()})
                row += 1

    def _sample(self, shard: Path, row: int, record: dict[str, Any]) -> Sample:
        image_field = record.get(self.image_column)
        image: bytes | Path | None = None
        image_path = None
        if isinstance(image_field, dict):
            image = image_field.get("bytes") or None
            image_path = image_field.get("path") or None
        elif isinstance(image_field, (bytes, bytearray)):
            image = bytes(image_field)
        elif isinstance(image_field, str):
            image_path = image_field
        if image is None and image_path and (shard.parent / image_path).is_file():
            image = shard.parent / image_path
        sample_id = str(image_path) if image_path else f"{shard.stem}#{row}"
        parse = parse_label(record.get(self.label_column) if self.label_column else None, LabelParse())
        for column, key in self.rating_columns.items():
            parse_label({key: record.get(column)}, parse)
        ratings, votes = parse.mean_ratings(), parse.vote_counts()
        self._iterated += 1
        self._seen_ratings.update(ratings.keys())
        self._seen_votes.update(votes.keys())
        self._unknown.update(parse.unknown_keys)
        if not ratings and not votes:
            self._unlabelled += 1
        metadata = {f: _scalar_text(self._metadata_value(record, f)) for f in self.metadata_fields}
        return Sample(sample_id, image, ratings, votes, metadata)

    def _metadata_value(self, record: dict[str, Any], name: str) -> Any:
        if name in self._struct_fields:
            column, child = self._struct_fields[name]
            parent = record.get(column)
            return parent.get(child) if isinstance(parent, dict) else None
        return record.get(name)

    def coverage_report(self) -> str:
        """What the labels lacked over the last full pass (call after iterating)."""
        lines = []
        if not self._iterated:
            return ""
        if self._unlabelled:
            lines.append(
                f"{self.name}: {self._unlabelled} of {self._iterated} rows had no recognisable ratings or votes"
            )
        if self._seen_ratings or self.kind in ("big", "hq"):
            expected = HEAD_KEYS if self.kind == "big" else EMOTION_KEYS
            missing = [k for k in expected if k not in self._seen_ratings]
            if missing:
                lines.append(
                    f"{self.name}: no ratings for {len(missing)} head(s): {', '.join(missing)} "
                    "(these heads get no stage-1 target)"
                )
        if self._unknown:
            top = ", ".join(f"{k!r}×{n}" for k, n in self._unknown.most_common(8))
            lines.append(f"{self.name}: label keys that name no emotion or dimension were ignored: {top}")
        return "\n".join(lines)


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, dict, tuple, bytes, bytearray)):
        return None if isinstance(value, (bytes, bytearray)) else str(value)
    return str(value)


def shard_names(shards: Sequence[Path]) -> list[str]:
    return [p.name for p in shards]
