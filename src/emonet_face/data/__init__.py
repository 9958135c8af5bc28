"""Dataset readers (EmoNet-Face Parquet shards, image folders with target CSVs) and the embedding store."""

from __future__ import annotations

from pathlib import Path

from emonet_face.data.parquet import HF_DATASETS, ParquetDataset, resolve_dataset_shards
from emonet_face.data.samples import Dataset, Sample, parse_label
from emonet_face.data.store import (
    StoreTargets,
    is_store,
    read_manifest,
    read_store,
    read_store_targets,
    write_embeddings,
    write_store,
)
from emonet_face.data.tables import ImageFolderDataset, read_targets_csv
from emonet_face.data.webdataset import WebDatasetShards
from emonet_face.errors import InputError
from emonet_face.inputs import discover_inputs

__all__ = [
    "HF_DATASETS",
    "Dataset",
    "ImageFolderDataset",
    "ParquetDataset",
    "Sample",
    "StoreTargets",
    "WebDatasetShards",
    "is_store",
    "open_dataset",
    "parse_label",
    "read_manifest",
    "read_store",
    "read_store_targets",
    "read_targets_csv",
    "resolve_dataset_shards",
    "write_embeddings",
    "write_store",
]


def open_dataset(
    ref: str | Path,
    *,
    targets: str | Path | None = None,
    images: str | Path | None = None,
    kind: str | None = None,
    revision: str | None = None,
    split: str | None = None,
) -> Dataset:
    """Pick the reader for ``ref``.

    * ``hq`` / ``binary`` / ``big`` → the EmoNet-Face dataset on the Hub;
    * a ``.tar`` file, a folder holding ``.tar`` shards, a glob or brace pattern
      (``shards/{00000..00099}.tar``) → :class:`WebDatasetShards`;
    * a Hub id, a ``.parquet`` file or a folder holding ``.parquet`` shards → :class:`ParquetDataset`;
    * a ``.csv`` file → :class:`ImageFolderDataset` with images under ``images`` (default: the CSV's folder);
    * a folder of images (+ ``targets`` CSV, optional) → :class:`ImageFolderDataset`.
    """
    text = str(ref)
    if text.lower() in HF_DATASETS:
        return ParquetDataset(HF_DATASETS[text.lower()], kind=kind or text.lower(), revision=revision, split=split)
    path = Path(ref).expanduser()
    tars = _tar_shards(text, path) if targets is None else []
    if tars:
        return WebDatasetShards([p for p in tars if not split or split in str(p)], name=text, kind=kind)
    if path.is_file() and path.suffix.lower() == ".csv":
        return ImageFolderDataset(images or path.parent, path, kind=kind)
    if path.is_file() and path.suffix.lower() == ".parquet":
        return ParquetDataset(path, kind=kind, split=split)
    if path.is_dir():
        if targets is None and any(path.rglob("*.parquet")):
            return ParquetDataset(path, kind=kind, split=split)
        return ImageFolderDataset(images or path, targets, kind=kind)
    if not path.exists() and text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return ParquetDataset(text, kind=kind, revision=revision, split=split)
    raise InputError(
        f"{text}: dataset not found; pass a folder of .parquet shards, a Hub dataset id, hq/binary/big, "
        "a targets .csv or an image folder"
    )


def _tar_shards(text: str, path: Path) -> list[Path]:
    """WebDataset shards named by ``text``: a .tar file, a folder of them, a glob or brace pattern."""
    import glob


    if path.is_file():
        return [path] if path.suffix.lower() == ".tar" else []
    if path.is_dir():
        return sorted(p for p in path.rglob("*.tar") if not p.name.startswith("."))
    if "{" in text or glob.has_magic(text):
        return [p for p in discover_inputs([text]) if p.suffix.lower() == ".tar"]
    return []
