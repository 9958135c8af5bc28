"""Time the real-size SigLIP2 so400m-patch16-384 encoder (random weights: timing does not depend
on them) on every backend, side by side: seconds per image at batch 1 and 8 for torch fp32, torch
bf16, OpenVINO f32 / bf16, ONNX Runtime fp32 / int8 (experimental) and exported one-graph folders
(ONNX, OpenVINO, ONNX int8); cosine and max |delta centred score| against torch fp32; peak memory;
conversion and first-start times (cold vs warm cache); end-to-end ``emonet-face predict`` on face
photos, today's torch fp32 vs the default.

    python benchmarks/bench_encoder.py                      # CPU, every way, one round
    python benchmarks/bench_encoder.py --device cuda        # GPU: torch fp32 vs bf16 (SDPA)
    python benchmarks/bench_encoder.py --device cuda --compile

Each way runs in its own fresh process (clean peak memory, real first-start time). The random full
checkpoint (text + vision, ~4.5 GB, the real architecture) and 44 random Large heads are written
once to ``--workdir`` and reused by later runs.
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

    from emonet_face.runtime.encoder import siglip2_preprocessor_config

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

    from emonet_face.runtime.encoder import ImageEncoder

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


# --- backends, side by side ----------------------------------------------------------------------
WAYS = {
    # name: (backend, dtype) for load_encoder; "exported-FORMAT" runs an `emonet-face export` folder
    # (written on the first run: its conversion time is the cold start minus the warm start)
    "torch-fp32": ("torch", "float32"),
    "torch-bf16": ("torch", "bfloat16"),
    "openvino-f32": ("openvino", "float32"),
    "openvino-bf16": ("openvino", "bfloat16"),
    "onnx-fp32": ("onnx", "float32"),
    "onnx-int8": ("onnx", "int8"),  # experimental: ONNX Runtime dynamic quantisation
    "exported-onnx": ("exported-onnx", "float32"),
    "exported-openvino": ("exported-openvino", "float32"),
    "exported-onnx-int8": ("exported-onnx", "int8"),  # experimental
}


def build_heads(folder: Path) -> Path:
    """44 random Large-size heads (1152 → 1024 → 512 → 256 → 1) in the released layout."""
    if (folder / "neutral_stats.json").is_file() or any(folder.glob("*neutral*")):
        return folder
    from emonet_face import taxonomy as tx
    from emonet_face.heads import FusedHeads, HeadArchitecture, save_heads

    torch.manual_seed(0)
    heads = FusedHeads(tx.HEAD_KEYS, HeadArchitecture(1152, (1024, 512, 256)), [0.01 * i for i in range(44)])
    save_heads(heads, folder)
    return folder


def way_probe(way: str, args: argparse.Namespace) -> None:
    """Fresh process: load (cold or warm cache), time batch sizes on fixed pixels, save outputs."""
    from emonet_face.heads import load_heads, postprocess_scores
    from emonet_face.runtime import ExportedGraph, load_encoder

    backend, dtype = WAYS[way]
    workdir = args.workdir
    start = time.perf_counter()
    exported = backend.startswith("exported")
    cache_hit = None
    if exported:
        folder = workdir / way
        cache_hit = folder.is_dir()
        if not cache_hit:
            from emonet_face.export import export_model

            fmt = backend.removeprefix("exported-")
            export_model(folder, encoder=workdir / CHECKPOINT, heads=workdir / "heads-large-random", fmt=fmt, dtype=dtype)
        encoder = ExportedGraph(folder, dtype=dtype)
    else:
        encoder = load_encoder(
            workdir / CHECKPOINT, backend=backend, device=args.device, dtype=dtype, compiled_dir=workdir / "compiled"
        )
    load_s = time.perf_counter() - start
    heads = None if exported else load_heads(workdir / "heads-large-random")
    result: dict = {"way": way, "load_s": load_s, "cache_hit": getattr(encoder, "cache_hit", cache_hit), "batches": {}}
    gen = torch.Generator().manual_seed(0)
    pixels_all = torch.rand(max(args.sizes), 3, 384, 384, generator=gen) * 2 - 1
    first = time.perf_counter()
    encoder(pixel_values=pixels_all[:1])  # warm-up (first inference allocates / specialises)
    result["first_inference_s"] = time.perf_counter() - first
    if args.repeats == 0:  # first-start probe only
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    outputs = None
    for size in args.sizes:
        pixels = pixels_all[:size]
        best = float("inf")
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            tick = time.perf_counter()
            out = encoder(pixel_values=pixels)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - tick)
        result["batches"][size] = best
        outputs = out
    if isinstance(outputs, dict):  # exported one graph: embedding + raw
        embedding, raw = outputs["embedding"], outputs["raw"]
        means = encoder.neutral_mean.numpy()
    else:
        embedding = outputs.float().cpu()
        with torch.no_grad():
            raw = heads(embedding)
        means = heads.neutral_mean.numpy()
    centred, _ = postprocess_scores(raw, means, list(range(40)))
    np.save(workdir / f"out-{way}-embedding.npy", embedding.float().numpy())
    np.save(workdir / f"out-{way}-centred.npy", centred)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def run_way(way: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--way-probe", way, "--workdir", str(args.workdir), "--device", args.device]
    command += ["--batch-sizes", args.batch_sizes, "--repeats", str(args.repeats)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"{way} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
        return {"way": way, "failed": True}
    return json.loads(out.stdout.strip().splitlines()[-1])


def face_photos(folder: Path, n: int) -> list[Path]:
    """``n`` photos with one real face each, made from scikit-image's astronaut picture (shipped in the
    package: no download) by crop, flip, scale and brightness changes."""
    from PIL import Image, ImageEnhance
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    base = Image.fromarray(data.astronaut())  # 512x512, one frontal face
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"photo{i:03d}.jpg"
        if not path.is_file():
            left, top = (int(v) for v in rng.integers(0, 60, 2))
            image = base.crop((left, top, left + 420, top + 420))
            if i % 2:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            image = image.resize((int(rng.integers(480, 800)),) * 2, Image.BICUBIC)
            image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.7, 1.3)))
            image.save(path, quality=90)
        paths.append(path)
    return paths


def end_to_end(args: argparse.Namespace, extra: list[str], label: str, env: dict) -> dict:
    """Wall time of the `emonet-face predict` command on the face photos (model load included)."""
    import os

    photos = face_photos(args.workdir / "faces", args.images)
    out = args.workdir / f"e2e-{label}.csv"
    command = [sys.executable, "-m", "emonet_face.cli.main", "predict", str(photos[0].parent), "--out", str(out)]
    command += ["--encoder", str(args.workdir / CHECKPOINT), "--heads", str(args.workdir / "heads-large-random")]
    command += ["--quiet", *extra]
    tick = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    seconds = time.perf_counter() - tick
    if done.returncode not in (0, 1):
        print(f"end-to-end {label} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return {"label": label, "failed": True}
    import pandas as pd

    table = pd.read_csv(out)
    return {"label": label, "seconds": seconds, "rows": len(table), "faces": int(table["error"].isna().sum())}


CHECKPOINT = "siglip2-so400m-patch16-384-random"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/emonet-face-bench-encoder"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma list of {', '.join(WAYS)}")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per batch size (best is kept)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds over all ways")
    parser.add_argument("--images", type=int, default=30, help="face photos for the end-to-end predict runs")
    parser.add_argument("--skip-load", action="store_true", help="skip the vision-vs-full load probes")
    parser.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end predict runs")
    parser.add_argument("--keep-cache", action="store_true", help="do not clear converted models first")
    parser.add_argument("--compile", action="store_true", help="GPU: torch.compile the vision tower")
    parser.add_argument("--probe", choices=["vision", "full"], help=argparse.SUPPRESS)
    parser.add_argument("--way-probe", choices=list(WAYS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes = [int(b) for b in args.batch_sizes.split(",")]
    checkpoint = args.workdir / CHECKPOINT
    if args.probe:
        load_probe(args.probe, str(checkpoint))
        return
    if args.way_probe:
        way_probe(args.way_probe, args)
        return
    if args.device.startswith("cuda"):
        gpu_run(args)
        return

    import shutil

    build_checkpoint(checkpoint)
    build_heads(args.workdir / "heads-large-random")
    if not args.keep_cache:
        for folder in ("compiled", *(w for w in WAYS if w.startswith("exported"))):
            shutil.rmtree(args.workdir / folder, ignore_errors=True)
    from emonet_face.runtime import cpu_has_bf16

    print(
        f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_bf16()}; "
        f"batch sizes {args.sizes}, {args.repeats} timed run(s) each, {args.rounds} round(s)"
    )
    if not args.skip_load:
        print("\n| load (fresh process) | seconds | peak RSS after load, MB | peak RSS, weights read, MB | params |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for kind, label in (("vision", "ImageEncoder (vision tower)"), ("full", "SiglipModel (text + vision)")):
            result = probe(kind, args.workdir)
            print(
                f"| {label} | {result['seconds']:.1f} | {result['peak_rss_mb']:.0f} | "
                f"{result['touched_rss_mb']:.0f} | {result['params'] / 1e6:.0f} M |"
            )

    ways = [w for w in args.ways.split(",") if w]
    if ways:
        compare_ways(ways, args)

    if not args.skip_e2e:
        today = end_to_end(args, ["--backend", "torch", "--dtype", "float32"], "torch-fp32", {})
        default = end_to_end(args, [], "default", {"EMONET_FACE_CACHE": str(args.workdir / "compiled")})
        print(f"\n| end to end: predict {args.images} face photos (default detector) | seconds | rows | images/s |")
        print("| --- | ---: | ---: | ---: |")
        for res, label in (
            (today, "today: --backend torch --dtype float32"),
            (default, "default command (warm cache)"),
        ):
            if res.get("failed"):
                print(f"| {label} | failed | | |")
            else:
                print(f"| {label} | {res['seconds']:.1f} | {res['rows']} | {args.images / res['seconds']:.3f} |")
        if not today.get("failed") and not default.get("failed"):
            print(f"\nend-to-end speed-up of the default command: {today['seconds'] / default['seconds']:.2f}x")


def compare_ways(ways: list[str], args: argparse.Namespace) -> None:
    """Every way in a fresh process, interleaved over rounds; the table against torch fp32."""
    runs: dict[str, list[dict]] = {w: [] for w in ways}
    for round_ in range(args.rounds):
        for way in ways:
            result = run_way(way, args)
            result["round"] = round_
            runs[way].append(result)
            print(f"  round {round_ + 1} {way}: {json.dumps(result)}", flush=True)
    # a second, warm start of the converted ways: no conversion
    warm_args = argparse.Namespace(**{**vars(args), "batch_sizes": "1", "repeats": 0})
    warm = {w: run_way(w, warm_args) for w in ways if not w.startswith("torch")}
    for way, result in warm.items():
        print(f"  warm start {way}: {json.dumps(result)}", flush=True)

    base = "torch-fp32"
    ref_emb = np.load(args.workdir / f"out-{base}-embedding.npy")
    ref_cen = np.load(args.workdir / f"out-{base}-centred.npy")
    print(
        f"\n| way | s/img batch {args.sizes[0]} | s/img batch {args.sizes[-1]} | vs torch fp32 (batch {args.sizes[-1]}) "
        "| min cosine | max abs delta centred | peak RSS cold, MB | peak RSS warm, MB | first start cold, s | warm, s "
        "| conversion, s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base_t = min(r["batches"][str(args.sizes[-1])] for r in runs[base] if not r.get("failed")) / args.sizes[-1]
    for way in ways:
        ok = [r for r in runs[way] if not r.get("failed")]
        if not ok:
            print(f"| {way} | failed | | | | | | | | | |")
            continue
        per = {b: min(r["batches"][str(b)] for r in ok) / b for b in (args.sizes[0], args.sizes[-1])}
        emb = np.load(args.workdir / f"out-{way}-embedding.npy")
        cen = np.load(args.workdir / f"out-{way}-centred.npy")
        cos = (emb * ref_emb).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref_emb, axis=1))
        cold = ok[0]["load_s"] + ok[0]["first_inference_s"]
        hot = warm.get(way, {"failed": True})
        hot_s = hot["load_s"] + hot["first_inference_s"] if not hot.get("failed") else float("nan")
        hot_rss = hot["peak_rss_mb"] if not hot.get("failed") else float("nan")
        convert_s = ok[0]["load_s"] - hot["load_s"] if ok[0].get("cache_hit") is not True and not hot.get("failed") else 0
        print(
            f"| {way} | {per[args.sizes[0]]:.2f} | {per[args.sizes[-1]]:.2f} | {base_t / per[args.sizes[-1]]:.2f}x "
            f"| {cos.min():.6f} | {np.abs(cen - ref_cen).max():.2e} | {max(r['peak_rss_mb'] for r in ok):.0f} "
            f"| {hot_rss:.0f} | {cold:.1f} | {hot_s:.1f} | {convert_s:.0f} |"
        )
    print(
        "\n(first start = load, incl. conversion on a cold cache, + first inference; warm = the same with the "
        "converted model cached; conversion = cold load - warm load; peak RSS cold = the timed run, incl. "
        "conversion on a cold cache; warm = load + batch 1; torch has no conversion. int8 rows are EXPERIMENTAL: "
        "random weights cannot judge their accuracy on real faces, only their drift from float32 here)"
    )


def gpu_run(args: argparse.Namespace) -> None:
    """CUDA: torch fp32 vs bf16 (SDPA attention), optionally torch.compile, pinned-memory transfers."""
    from emonet_face.runtime import load_encoder

    build_checkpoint(args.workdir / CHECKPOINT)
    name = torch.cuda.get_device_name(0)
    print(f"device {name}, torch {torch.__version__}; ceiling: about 519 GFLOP per 384x384 image")
    print("\n| way | batch | s / image | images / s | TFLOP/s achieved |")
    print("| --- | ---: | ---: | ---: | ---: |")
    reference = None
    for dtype in ("float32", "bfloat16"):
        encoder = load_encoder(args.workdir / CHECKPOINT, backend="torch", device=args.device, dtype=dtype)
        if args.compile:
            encoder.vision_model = torch.compile(encoder.vision_model, dynamic=True)
        for size in args.sizes:
            pixels = torch.rand(size, 3, 384, 384).pin_memory()
            encoder(pixel_values=pixels)  # warm-up / compile
            best = float("inf")
            for _ in range(max(args.repeats, 3)):
                torch.cuda.synchronize()
                tick = time.perf_counter()
                out = encoder(pixel_values=pixels.to(args.device, non_blocking=True))
                torch.cuda.synchronize()
                best = min(best, time.perf_counter() - tick)
            per = best / size
            print(
                f"| torch {dtype}{' compiled' if args.compile else ''} | {size} | {per:.4f} | {1 / per:.1f} | {0.519 / per:.1f} |"
            )
        if reference is None:
            reference = out.float().cpu()
        else:
            cos = torch.nn.functional.cosine_similarity(out.float().cpu(), reference).min()
            print(f"\nmin cosine bf16 vs fp32: {cos:.6f}")
        del encoder
        torch.cuda.empty_cache()
    print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
