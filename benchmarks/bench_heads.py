"""Score 10,000 embeddings with the 44 Large heads three ways, side by side, and print ratios.

(a) the released example's way: one embedding at a time, one head module at a time, ``.item()``
    per head (timed on ``--subset`` rows and extrapolated: it is far too slow to run in full);
(b) per-head ``nn.Sequential`` modules called on a batch (the obvious batched port);
(c) ours: :class:`emonet_face.heads.FusedHeads` (stacked weights).

(b) and (c) run at batch sizes 1, 32 and 10,000; batch 1 is timed on ``--subset`` rows and
extrapolated too. Every timing is the best of ``--repeats`` rounds, the three ways interleaved in
each round so that background load hits them alike. Random weights (timing does not depend on
them) unless ``--heads DIR`` points at a released heads folder.

    python benchmarks/bench_heads.py                 # CPU, Large heads, 10,000 rows
    python benchmarks/bench_heads.py --device cuda   # when a GPU is available
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from emonet_face import taxonomy as tx
from emonet_face.heads import HEAD_ARCHITECTURES, FusedHeads, HeadArchitecture, load_heads


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--subset", type=int, default=200, help="rows timed for (a) and for batch size 1")
    parser.add_argument("--batch-sizes", default="1,32,10000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", choices=sorted(HEAD_ARCHITECTURES), default="large")
    parser.add_argument("--heads", help="released heads folder (default: random weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")

    torch.manual_seed(0)
    if args.heads:
        fused = load_heads(args.heads)
    else:
        fused = FusedHeads(tx.HEAD_KEYS, HeadArchitecture(1152, HEAD_ARCHITECTURES[args.size]))
    fused = fused.to(device).eval()
    modules = [fused.head_module(k).to(device) for k in fused.keys]
    embeddings = torch.nn.functional.normalize(torch.randn(args.rows, fused.in_dim, device=device), dim=1)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    def released_way(rows: torch.Tensor) -> list[list[float]]:
        out = []
        for i in range(rows.shape[0]):
            emb = rows[i : i + 1]
            out.append([m(emb).item() for m in modules])
        return out

    def per_head_batched(rows: torch.Tensor, batch: int) -> torch.Tensor:
        return torch.cat([torch.cat([m(part) for m in modules], dim=1) for part in rows.split(batch)])

    def ours(rows: torch.Tensor, batch: int) -> torch.Tensor:
        return torch.cat([fused(part) for part in rows.split(batch)])

    print(
        f"{len(fused.keys)} {args.size} heads (in_dim {fused.in_dim}), {args.rows} embeddings, device {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, best of {args.repeats}"
    )
    with torch.inference_mode():
        diff = (ours(embeddings, 4096) - per_head_batched(embeddings, 4096)).abs().max().item()
        ref_a = torch.tensor(released_way(embeddings[:20]), device=device)
        diff_a = (ours(embeddings[:20], 20) - ref_a).abs().max().item()
        print(f"max |ours - (b)| = {diff:.2e}, max |ours - (a)| = {diff_a:.2e} (must be <= 1e-5)")
        assert diff <= 1e-5 and diff_a <= 1e-5

        best: dict[str, float] = {}
        subset = embeddings[: args.subset]
        scale_subset = args.rows / subset.shape[0]
        for _ in range(args.repeats):
            trial = {"a": timed(lambda: released_way(subset), device) * scale_subset}
            for batch in batch_sizes:
                rows, scale = (subset, scale_subset) if batch == 1 else (embeddings, 1.0)
                trial[f"b{batch}"] = timed(lambda rows=rows, batch=batch: per_head_batched(rows, batch), device) * scale
                trial[f"c{batch}"] = timed(lambda rows=rows, batch=batch: ours(rows, batch), device) * scale
            for key, value in trial.items():
                best[key] = min(best.get(key, float("inf")), value)

    print(
        f"\n(a) released way (1 embedding x 1 head, .item()): {best['a']:.2f} s for {args.rows} "
        f"(timed on {subset.shape[0]} rows, extrapolated)"
    )
    print("\n| batch size | (b) per-head modules, s | (c) ours, s | ours vs (a) | ours vs (b) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for batch in batch_sizes:
        b, c = best[f"b{batch}"], best[f"c{batch}"]
        note = " (extrapolated)" if batch == 1 else ""
        print(f"| {batch}{note} | {b:.2f} | {c:.2f} | {best['a'] / c:.1f}x | {b / c:.2f}x |")


if __name__ == "__main__":
    main()
