"""Parquet shards laid out like the EmoNet-Face Hub datasets, made in the test (small generated images)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from emonet_face.taxonomy import EMOTIONS, EXTRA_DIMENSIONS

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png_bytes(rng: np.random.Generator, size: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def binary_label(rng: np.random.Generator, target: int) -> list[dict]:
    contrast = (target + 1 + int(rng.integers(0, len(EMOTIONS) - 1))) % len(EMOTIONS)
    raters = {}
    for r in range(int(rng.integers(1, 4))):
        raters[f"human-{r + 1}"] = {
            EMOTIONS[target].name: bool(rng.random() < 0.8),
            EMOTIONS[contrast].name: bool(rng.random() < 0.2),
        }
    return [raters]


def hq_label(rng: np.random.Generator) -> list[dict]:
    return [{f"human-{r + 1}": {e.annotation_key: int(rng.integers(0, 8)) for e in EMOTIONS[:10]}} for r in range(2)]


def big_label(rng: np.random.Generator) -> str:
    """BIG as a JSON string of generated ratings per emotion and extra dimension (one plausible layout)."""
    ratings = {e.name: int(rng.integers(0, 8)) for e in EMOTIONS}
    ratings.update({d.name: int(rng.integers(d.low, d.high + 1)) for d in EXTRA_DIMENSIONS})
    return json.dumps({"generated": ratings})


def write_shards(
    folder: Path,
    kind: str,
    n: int,
    *,
    shards: int = 2,
    seed: int = 0,
    corrupt: int | None = None,
    ethnicities: tuple[str, ...] = ("asian", "black", "white"),
) -> Path:
    """``n`` rows split over ``shards`` files ``data/train-0000i-of-0000k.parquet``."""
    rng = np.random.default_rng(seed)
    out = folder / "data"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        target = int(rng.integers(0, len(EMOTIONS)))
        label: object
        if kind == "binary":
            label = json.dumps(binary_label(rng, target))
        elif kind == "hq":
            label = json.dumps(hq_label(rng))
        else:
            label = big_label(rng)
        image = b"not an image" if corrupt == i else png_bytes(rng)
        rows.append(
            {
                "path": {"bytes": image, "path": f"{kind}_{i:05d}.png"},
                "prompt": f"a face showing {EMOTIONS[target].name}",
                "age": str(20 + i % 50),
                "ethnicity": ethnicities[i % len(ethnicities)],
                "gender": ["female", "male"][i % 2],
                "emotion": "neutral" if i % 10 == 0 else EMOTIONS[target].name,
                "subset": kind,
                "label": label,
            }
        )
    per = -(-n // shards)
    schema = pa.schema(
        [("path", IMAGE_TYPE)]
        + [(c, pa.string()) for c in ("prompt", "age", "ethnicity", "gender", "emotion", "subset", "label")]
    )
    for s in range(shards):
        part = rows[s * per : (s + 1) * per]
        table = pa.Table.from_pylist(part, schema=schema)
        pq.write_table(table, out / f"train-{s:05d}-of-{shards:05d}.parquet", row_group_size=8)
    return folder


CARD_DEMOGRAPHICS = pa.struct([("age", pa.int64()), ("gender", pa.string()), ("ethnicity", pa.string())])


def write_card_shards(folder: Path, n: int, *, ethnicities: tuple[str, ...], shards: int = 2, seed: int = 0) -> Path:
    """The layout some dataset cards describe: ``image`` struct, ``annotations`` (HQ ratings as nested
    structs, one field per rater, ``None`` where a rater did not rate) and a ``demographics`` struct."""
    rng = np.random.default_rng(seed)
    out = folder / "data"
    out.mkdir(parents=True, exist_ok=True)
    keys = [e.annotation_key for e in EMOTIONS[:6]]
    ratings = pa.struct([(k, pa.int64()) for k in keys])
    schema = pa.schema(
        [
            ("image", IMAGE_TYPE),
            ("annotations", pa.struct([(f"human-{r}", ratings) for r in (1, 2, 3)])),
            ("demographics", CARD_DEMOGRAPHICS),
        ]
    )
    rows = []
    for i in range(n):
        raters = {}
        for r in (1, 2, 3):
            rated = r < 3 or i % 4 == 0
            raters[f"human-{r}"] = {k: int(rng.integers(0, 3)) for k in keys} if rated else None
        rows.append(
            {
                "image": {"bytes": png_bytes(rng, 8), "path": f"card_{i:05d}.png"},
                "annotations": raters,
                "demographics": {
                    "age": int(rng.integers(1, 90)) if i % 7 else None,
                    "gender": ["man", "woman", "Woman"][i % 3],
                    "ethnicity": ethnicities[i % len(ethnicities)],
                },
            }
        )
    per = -(-n // shards)
    for s in range(shards):
        table = pa.Table.from_pylist(rows[s * per : (s + 1) * per], schema=schema)
        pq.write_table(table, out / f"train-{s:05d}-of-{shards:05d}.parquet", row_group_size=8)
    return folder
