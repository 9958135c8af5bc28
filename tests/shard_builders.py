"""Builders for shard test data: WebDataset tars (img2dataset's layout) and HF-layout Parquet files."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def image_bytes(seed: int, fmt: str = "JPEG") -> bytes:
    """A random RGB image (sizes vary with the seed), encoded."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (40 + seed % 7, 36 + seed % 5, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_tar(path: Path, shard: int, n: int, *, corrupt: tuple[int, ...] = (), seed: int = 0) -> dict[str, bytes]:
    """img2dataset-like shard: ``KEY.jpg`` + ``KEY.json`` + ``KEY.txt``; returns key → image bytes
    (``corrupt`` samples get bytes that are not an image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {}
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            key = f"{shard:05d}{i:04d}"
            data = b"not an image" if i in corrupt else image_bytes(seed + 1000 * shard + i)
            images[key] = data
            meta = {"key": key, "url": f"https://example.org/{key}.jpg", "width": 40, "status": "success", "exif": {}}
            _add(tar, f"{key}.jpg", data)
            _add(tar, f"{key}.json", json.dumps(meta).encode())
            _add(tar, f"{key}.txt", f"caption {i}".encode())
    return images


def write_hf_parquet(path: Path, n: int, *, seed: int = 0, with_id: bool = True, row_group: int = 7) -> dict[str, bytes]:
    """Hugging Face image layout: ``image`` struct ``{bytes, path}`` (+ ``id``); returns key → bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = {f"img-{i}" if with_id else str(i): image_bytes(seed + i, "PNG") for i in range(n)}
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns = {
        "image": pa.array([{"bytes": b, "path": f"{k}.png"} for k, b in images.items()], type=image_type),
        "label": pa.array([f"label {i}" for i in range(n)]),
    }
    if with_id:
        columns = {"id": pa.array(list(images)), **columns}
    pq.write_table(pa.table(columns), path, row_group_size=row_group)
    return images
