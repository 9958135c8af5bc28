"""`emonet-face stats` streams Parquet without reading image bytes: peak Arrow memory and time, side by side.

Writes SHARDS Hub-layout shards of ROWS rows with IMAGE_KB of incompressible image bytes per row (plus
labels and demographics), then, each in a fresh process: (a) `dataset_stats` (with `--meta`-style image ids,
so the image struct's `path` field is read), (b) `pandas.read_parquet` of ONE shard, as a naive reader would
load each shard. Prints peak Arrow pool memory (``pyarrow.default_memory_pool().max_memory()``) and wall time
(after imports).

    python benchmarks/bench_stats.py [--shards 4 --rows 200 --image-kb 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import pyarrow as pa
from pathlib import Path
import pandas as pd
from emonet_face.stats.dataset import dataset_stats  # imports emonet_face (torch, scipy): not timed
import emonet_face.bench.tables
mode, folder, meta = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
if mode == "stats":
    n = len(dataset_stats(folder, meta=meta).images)
else:
    n = len(pd.read_parquet(sorted(Path(folder).rglob("*.parquet"))[0]))
print(json.dumps({"rows": n, "seconds": time.perf_counter() - start, "peak_mb": pa.default_memory_pool().max_memory() / 2**20}))
"""


def build(folder: Path, shards: int, rows: int, image_kb: int) -> Path:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from emonet_face.taxonomy import EMOTIONS

    rng = np.random.default_rng(0)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    names = []
    for s in range(shards):
        records = []
        for i in range(rows):
            name = f"img_{s:03d}_{i:05d}.jpg"
            names.append(name)
            target = EMOTIONS[int(rng.integers(0, 40))].name
            records.append(
                {
                    "path": {"bytes": rng.bytes(image_kb * 1024), "path": name},
                    "age": str(int(rng.integers(18, 80))),
                    "ethnicity": "arabic",
                    "gender": "woman",
                    "emotion": target,
                    "label": json.dumps([{"human-1": {target: True}}]),
                }
            )
        schema = pa.schema([("path", image_type)] + [(c, pa.string()) for c in ("age", "ethnicity", "gender", "emotion", "label")])
        pq.write_table(pa.Table.from_pylist(records, schema=schema), folder / f"train-{s:05d}.parquet", row_group_size=50)
    pd.DataFrame({"image": names, "gender": "man"}).to_csv(folder / "meta.csv", index=False)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--image-kb", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = build(Path(tmp), args.shards, args.rows, args.image_kb)
        size = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 2**20
        print(f"{args.shards} shards x {args.rows} rows x {args.image_kb} KB images: {size:.0f} MB of Parquet")
        results = {}
        for mode in ("stats", "pandas-one-shard"):
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(folder), str(folder / "meta.csv")], capture_output=True, text=True, check=True)
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            results[mode]["process_s"] = time.perf_counter() - start
        for mode, r in results.items():
            print(f"{mode:<17} rows {r['rows']:>6}  peak Arrow memory {r['peak_mb']:8.1f} MB  {r['seconds']:6.2f} s")
        ratio = results["pandas-one-shard"]["peak_mb"] / max(results["stats"]["peak_mb"], 1e-9)
        print(f"peak memory ratio (one shard via pandas / whole dataset via stats): {ratio:.0f}x")


if __name__ == "__main__":
    main()
