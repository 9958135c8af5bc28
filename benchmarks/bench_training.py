"""Training throughput of 44 stacked Large heads vs the same heads trained one after another, and
embedding-store read speed. Prints embeddings/s and the ratios.

    python benchmarks/bench_training.py                       # 100k × 1152 synthetic embeddings
    python benchmarks/bench_training.py --steps 3 --rows 20000  # quicker

Training epochs over 100k embeddings take minutes per epoch on a 2-core CPU, so each side runs
``--steps`` optimiser steps of ``--batch-size`` rows drawn from the 100k (after one warm-up step)
and reports embeddings/s; an epoch's time is ``rows / (embeddings/s)``. Both sides run the same
step (:func:`emonet_face.train.stage.training_step`: masked weighted MSE + AdamW) on the same
batches: the stacked side as one :class:`FusedHeads`, the baseline as 44 released-style
``nn.Sequential`` heads, each with its own AdamW, one after another.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from emonet_face.data.store import read_store, write_embeddings
from emonet_face.heads import HEAD_ARCHITECTURES, FusedHeads, HeadArchitecture, build_head_module
from emonet_face.taxonomy import HEAD_KEYS
from emonet_face.train.stage import training_step


def _batches(x: np.ndarray, t: np.ndarray, w: np.ndarray, steps: int, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = np.sort(rng.choice(len(x), batch, replace=False))
        yield torch.from_numpy(x[idx]), torch.from_numpy(t[idx]), torch.from_numpy(w[idx])


def bench_stacked(x, t, w, arch, steps, batch) -> float:
    heads = FusedHeads(HEAD_KEYS, arch).train()
    optimizer = torch.optim.AdamW(list(heads.parameters()), lr=1e-3)
    batches = list(_batches(x, t, w, steps + 1, batch))
    training_step(heads, optimizer, *batches[0])  # warm-up
    start = time.perf_counter()
    for xb, tb, wb in batches[1:]:
        training_step(heads, optimizer, xb, tb, wb)
    return steps * batch / (time.perf_counter() - start)


def bench_sequential(x, t, w, arch, steps, batch, n_heads) -> float:
    """``n_heads`` separate heads, each trained on all batches before the next; scaled to 44 heads."""
    batches = list(_batches(x, t, w, steps + 1, batch))
    elapsed = 0.0
    for h in range(n_heads):
        head = build_head_module(arch).train()
        optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
        xb, tb, wb = batches[0]
        training_step(head, optimizer, xb, tb[:, h : h + 1], wb[:, h : h + 1])  # warm-up
        start = time.perf_counter()
        for xb, tb, wb in batches[1:]:
            training_step(head, optimizer, xb, tb[:, h : h + 1], wb[:, h : h + 1])
        elapsed += time.perf_counter() - start
    per_head = elapsed / n_heads
    return steps * batch / (per_head * len(HEAD_KEYS))


def _best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_store(x: np.ndarray, folder: Path, repeats: int = 3) -> tuple[float, float, float]:
    """Best-of-``repeats`` seconds to get the (N, D) float32 matrix (page cache warm for all three):
    read_store vs pandas + np.stack of the list column (the naive way) vs np.load of a .npy."""
    import pandas as pd

    store = folder / "store"
    write_embeddings(store, x, shard_size=65536)
    np.save(folder / "x.npy", x)
    shards = sorted(store.glob("part-*.parquet"))

    def naive() -> np.ndarray:
        frame = pd.concat([pd.read_parquet(p, columns=["embedding"]) for p in shards])
        return np.stack(frame["embedding"].to_numpy()).astype(np.float32)

    assert read_store(store)[0].shape == naive().shape == x.shape
    ours = _best_of(repeats, lambda: read_store(store))
    pandas_seconds = _best_of(repeats, naive)
    npy = _best_of(repeats, lambda: np.load(folder / "x.npy"))
    return ours, pandas_seconds, npy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1152)
    parser.add_argument("--arch", default="large", choices=sorted(HEAD_ARCHITECTURES))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed optimiser steps per side (after 1 warm-up)")
    parser.add_argument("--sequential-heads", type=int, default=44, help="heads timed one by one (scaled to 44)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = rng.uniform(0, 7, size=(args.rows, len(HEAD_KEYS))).astype(np.float32)
    w = np.ones_like(t)
    arch = HeadArchitecture(args.dim, HEAD_ARCHITECTURES[args.arch], 0.1)
    print(
        f"{args.rows:,} × {args.dim} synthetic embeddings, 44 {args.arch} heads {arch.widths}, batch {args.batch_size}, "
        f"{args.steps} timed steps per side, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    stacked = bench_stacked(x, t, w, arch, args.steps, args.batch_size)
    print(f"stacked (FusedHeads, one AdamW):      {stacked:10,.0f} embeddings/s  → epoch {args.rows / stacked:8.1f} s")
    sequential = bench_sequential(x, t, w, arch, args.steps, args.batch_size, args.sequential_heads)
    print(
        f"one after another ({args.sequential_heads} heads timed):  {sequential:10,.0f} embeddings/s  → epoch "
        f"{args.rows / sequential:8.1f} s"
    )
    print(f"ratio stacked / sequential: {stacked / sequential:.2f}×")
    with tempfile.TemporaryDirectory() as tmp:
        ours, pandas_seconds, npy = bench_store(x, Path(tmp))
    size_mb = x.nbytes / 1e6
    print(
        f"store read ({size_mb:,.0f} MB): read_store {ours:.3f} s ({size_mb / ours:,.0f} MB/s); "
        f"pandas + np.stack {pandas_seconds:.3f} s; np.load(.npy) {npy:.3f} s"
    )
    print(f"ratio read_store vs pandas: {pandas_seconds / ours:.1f}× faster; vs np.load: {npy / ours:.2f}×")


if __name__ == "__main__":
    main()
