"""Time the real-size SigLIP2 so400m-patch16-384 encoder (random weights: timing does not depend
on them): load time and peak memory of the vision tower alone vs the full text+vision model,
seconds per image at batch 1 vs batch 8, and images/s end to end from JPEG files through
``EmoNetFace.predict`` (decoding in DataLoader workers, heads included).

    python benchmarks/bench_encoder.py                  # CPU
    python benchmarks/bench_encoder.py --device cuda --dtype bfloat16   # on a GPU

The random full checkpoint (text + vision, ~4.5 GB, the real architecture) is written once to
``--workdir`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

SO400M = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16}


def build_checkpoint(folder: Path) -> Path:
    """google/siglip2-so400m-patch16-384's architecture (a ``siglip`` model), random weights."""
    if (folder / "config.json").is_file():
        return folder
    from transformers import SiglipConfig, SiglipModel

    from emonet_face.encoder import siglip2_preprocessor_config

    config = SiglipConfig(
        text_config={**SO400M, "vocab_size": 256000, "max_position_embeddings": 64},
        vision_config={**SO400M, "patch_size": 16, "image_size": 384},
    )
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("meta"):
        model = SiglipModel(config)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif "norm" in name:
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02)
        for buffer_name, buffer in model.named_buffers():
            if "position_ids" in buffer_name:
                buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(siglip2_preprocessor_config(384)))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"built random so400m checkpoint ({n_params / 1e9:.2f} B params) in {time.perf_counter() - start:.0f} s")
    return folder


def load_probe(kind: str, folder: str) -> None:
    """Run in a fresh process: print load seconds and peak RSS (so earlier allocations do not count)."""
    import transformers  # noqa: F401  (import cost is not load cost)

    from emonet_face.encoder import ImageEncoder

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if kind == "vision":
        model = ImageEncoder.from_pretrained(folder)
    else:
        from transformers import SiglipModel

        model = SiglipModel.from_pretrained(folder)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Weights may still be lazily memory-mapped: read every tensor once so the resident size is
    # what a running model holds.
    with torch.no_grad():
        n_params = sum(int(p.numel()) for p in model.parameters() if p.sum() is not None)
    touched = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak / 1024,
                "touched_rss_mb": touched / 1024,
                "base_rss_mb": base / 1024,
                "params": n_params,
            }
        )
    )


def probe(kind: str, folder: Path) -> dict:
    """Measure in a fresh interpreter (import baseline is about 300 MB RSS for torch + transformers)."""
    out = subprocess.run(
        [sys.executable, __file__, "--probe", kind, "--workdir", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_jpegs(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"face{i:03d}.jpg"
        if not path.is_file():
            small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # smooth-ish photo-sized JPEG
            Image.fromarray(small).resize((640, 480), Image.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/emonet-face-bench-encoder"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=16, help="JPEG files for the end-to-end run")
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--skip-load", action="store_true", help="skip the load-time / memory probes")
    parser.add_argument("--probe", choices=["vision", "full"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    checkpoint = args.workdir / "siglip2-so400m-patch16-384-random"
    if args.probe:
        load_probe(args.probe, str(checkpoint))
        return

    from emonet_face import taxonomy as tx
    from emonet_face.encoder import ImageEncoder
    from emonet_face.heads import FusedHeads, HeadArchitecture
    from emonet_face.pipeline import EmoNetFace, resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    build_checkpoint(checkpoint)
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
        f"dtype {dtype}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )

    if not args.skip_load:
        print("\n| load (fresh process) | seconds | peak RSS after load, MB | peak RSS, weights read, MB | params |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for kind, label in (
            ("vision", "ImageEncoder (vision tower + processor)"),
            ("full", "SiglipModel (text + vision)"),
        ):
            result = probe(kind, args.workdir)
            print(
                f"| {label} | {result['seconds']:.1f} | {result['peak_rss_mb']:.0f} | "
                f"{result['touched_rss_mb']:.0f} | {result['params'] / 1e6:.0f} M |"
            )

    encoder = ImageEncoder.from_pretrained(checkpoint, device=device, dtype=dtype)
    print("\n| batch size | s / batch | s / image | images / s |")
    print("| ---: | ---: | ---: | ---: |")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        pixels = torch.randn(batch, 3, 384, 384)
        encoder(pixels)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            encoder(pixels)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        print(f"| {batch} | {best:.2f} | {best / batch:.2f} | {batch / best:.2f} |")

    paths = write_jpegs(args.workdir / "jpegs", args.images)
    heads = FusedHeads(tx.HEAD_KEYS, HeadArchitecture(1152, (1024, 512, 256))).eval()
    model = EmoNetFace(heads, encoder).to(device)
    batch = max(int(b) for b in args.batch_sizes.split(","))
    model.predict(paths[:batch], batch_size=batch, num_workers=0)  # warm-up
    start = time.perf_counter()
    table = model.predict(paths, batch_size=batch, num_workers=args.num_workers, progress=False)
    seconds = time.perf_counter() - start
    assert table["error"].isna().all()
    print(
        f"\nend to end: {len(paths)} JPEGs (640x480) -> scores via EmoNetFace.predict, batch {batch}: "
        f"{seconds:.1f} s, {len(paths) / seconds:.2f} images/s"
    )


if __name__ == "__main__":
    main()
