"""Encoder speed on every backend and precision, through the code path ``predict`` runs, held against
the CPU's peak, beside whole ``predict`` processes.

    python benchmarks/bench_encoder.py                      # tiny random model: proves it runs (seconds)
    python benchmarks/bench_encoder.py --real-size --ways torch-float32,openvino-float32,int8 --batch-sizes 8
    python benchmarks/bench_encoder.py --encoder DIR --heads DIR   # your own checkpoint and heads

Each way is named backend-precision (``torch-float32``, ``openvino-bfloat16``, ``onnx-int8``...);
``int8`` is whatever ``--dtype int8`` selects without a backend, ``default`` what ``predict`` runs with
no option, ``exported-*`` an ``emonet-face export`` folder (``--model DIR``). For every way, two rows:

* **encoder only**, in a fresh process: the model is loaded as ``predict`` loads it
  (``EmoNetFace.from_pretrained`` with the same ``ModelOptions``), the photos are decoded and
  preprocessed by the model's own stages (``EmoNetFace.prepare``, whole images), and the timed call
  is ``Scorer.encode`` (the encoder interface, inference mode, the heads included: what ``predict``
  calls per batch). Best and median of ``--repeats`` timed calls per batch size after a batch-1
  warm-up; GFLOP/s from the encoder's FLOP count (:mod:`emonet_face.bench.flops`) and its share
  of the CPU's nominal peak (:mod:`emonet_face.bench.hardware`: cores, clock, vector width; the
  header says which clock and flags); cosine of the features and max |delta| of the centred scores
  against ``torch-float32`` (when it is among the ways).
* **end to end**: ``python -m emonet_face predict PHOTOS --faces none --batch-size B`` as a whole
  process with the way's options (warm conversion cache), on ``--images`` photos and on one batch of
  them: wall time, seconds per image, and ``predict``'s own time per image with start-up cancelled
  (the difference of the two runs over the difference in photos). The encoder-only median at batch
  B should be within 10 % of that: the last column says whether it is.

Why the earlier version disagreed with ``predict`` (torch float32 6.94 s/image at batch 8 against
~4.4 end to end on one AVX2 machine): the encoder call itself was the same (``load_encoder`` →
the SDPA vision tower, ``ImageEncoder.forward`` under inference mode, PyTorch's default threads in
both processes, no thread or denormal setting anywhere in the package), but the measurement was not:
one timed call per batch size (the first at batch 8, after a batch-1 warm-up) on ``torch.rand``
pixels fed straight to the encoder, against ``predict`` runs made at another time (its own
end-to-end rows used the default face detector) on a machine shared with other jobs. The earlier
real-size tables show PyTorch's first batch-8 call slower per image than batch 1 in every run
(3.35 → 5.05, 4.00 → 6.02 s) while OpenVINO's was not. Now both rows run the same loader,
preprocessing and ``Scorer.encode``, several timed calls each, side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

START = time.perf_counter()  # the way's start-up counts from here (imports included)

import numpy as np  # noqa: E402

from encoder_models import build_models, face_photos, run_env, run_predict  # noqa: E402

if TYPE_CHECKING:
    from emonet_face.bench.hardware import CpuPeak

WAYS: dict[str, tuple[str, str | None]] = {
    # name: (--backend, --dtype); None: the default ("auto")
    "default": ("auto", None),
    "torch-float32": ("torch", "float32"),
    "torch-bfloat16": ("torch", "bfloat16"),
    "openvino-float32": ("openvino", "float32"),
    "openvino-bfloat16": ("openvino", "bfloat16"),
    "onnx-float32": ("onnx", "float32"),
    "onnx-int8": ("onnx", "int8"),
    "int8": ("auto", "int8"),  # whatever --dtype int8 selects on this CPU
    "exported-onnx": ("onnx", "float32"),
    "exported-openvino": ("openvino", "float32"),
    "exported-onnx-int8": ("onnx", "int8"),
}
REFERENCE = "torch-float32"


def way_options(way: str, args: argparse.Namespace) -> list[str]:
    """``predict``'s model options for ``way`` (an exported way names its folder, built on first use)."""
    backend, dtype = WAYS[way]
    if way.startswith("exported-"):
        return ["--model", str(exported_folder(way, args))]
    options = ["--encoder", str(args.encoder), "--heads", str(args.heads), "--device", args.device]
    options += [] if backend == "auto" else ["--backend", backend]
    return options + ([] if dtype is None else ["--dtype", dtype])


def exported_folder(way: str, args: argparse.Namespace) -> Path:
    """The ``emonet-face export`` folder of ``way`` (written on the first run; cold start = export)."""
    folder = args.cache / f"{way}-{args.encoder.name}"
    if not folder.is_dir():
        from emonet_face.export import export_model

        fmt = "openvino" if "openvino" in way else "onnx"
        export_model(folder, encoder=args.encoder, heads=args.heads, fmt=fmt, dtype=WAYS[way][1] or "float32")
    return folder


def load_like_predict(way: str, args: argparse.Namespace):
    """The model as ``predict`` loads it: its CLI options parsed into the same ``ModelOptions``."""
    from emonet_face.cli.options import model_options
    from emonet_face.pipeline import EmoNetFace

    given = way_options(way, args)
    pairs = dict(zip(given[::2], given[1::2]))
    options = model_options(
        model=pairs.get("--model", "large"), encoder=pairs.get("--encoder"), heads=pairs.get("--heads"),
        revision=None, cache_dir=None, device=pairs.get("--device"), backend=pairs.get("--backend", "auto"),
        dtype=pairs.get("--dtype", "auto"), no_normalize=False,
    )
    return EmoNetFace.from_pretrained(options=options)


def way_probe(way: str, args: argparse.Namespace) -> None:
    """Fresh process: load, prepare the photos, warm up, time ``Scorer.encode``; print JSON, save outputs."""
    import torch

    tick = time.perf_counter()
    net = load_like_predict(way, args)
    loaded = time.perf_counter()
    photos = face_photos(args.cache / "photos", max(args.sizes))
    items = [item for p in photos for item in net.prepare({"path": str(p)}, str(p))]
    prepare_s = (time.perf_counter() - loaded) / len(photos)
    scorer = net.scorer
    first = time.perf_counter()
    scorer.encode(items[:1], 1)  # warm-up: the first call allocates and specialises
    first_s = time.perf_counter() - first
    result = {"way": way, "load_s": loaded - tick, "first_call_s": first_s, "startup_s": loaded - START + first_s}
    result |= {"prepare_s_per_image": prepare_s, "runs_as": net.describe()["encoder"], "threads": torch.get_num_threads()}
    result["cache_hit"] = getattr(net.encoder, "cache_hit", None)
    result["batches"] = {}
    scored = []
    for size in args.sizes:
        times = []
        for _ in range(args.repeats):
            tick = time.perf_counter()
            scored = scorer.encode(items[:size], size)
            times.append(time.perf_counter() - tick)
        result["batches"][str(size)] = times
    table = scorer.table(items[: len(scored)], scored)
    np.save(args.cache / f"out-{way}-features.npy", np.stack([f.float().numpy() for f, _ in scored]))
    np.save(args.cache / f"out-{way}-centred.npy", table[list(scorer.keys)].to_numpy(np.float64))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result, default=str))


def run_way(way: str, args: argparse.Namespace) -> dict:
    """``way_probe`` in a fresh interpreter (clean memory, true start-up)."""
    command = [sys.executable, __file__, "--way-probe", way, *args.passed]
    done = subprocess.run(command, capture_output=True, text=True, env=run_env(args.cache / "compiled"))
    if done.returncode != 0:
        print(f"{way} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return {"way": way, "failed": True}
    return json.loads(done.stdout.strip().splitlines()[-1])


def header(args: argparse.Namespace) -> tuple[float, CpuPeak | None]:
    """Print the machine, the CPU's peak and its assumptions; return (FLOP per image, CpuPeak or None)."""
    import torch

    from emonet_face.bench.flops import siglip_vision_flops
    from emonet_face.bench.hardware import detect_cpu_peak
    from emonet_face.runtime import EncoderCheckpoint, cpu_has_bf16
    from emonet_face.runtime.backends import pixel_size

    checkpoint = EncoderCheckpoint.resolve(args.encoder)
    side = pixel_size(checkpoint.processor())[0]
    flops = siglip_vision_flops(checkpoint.vision_config, image_size=side)
    peak = detect_cpu_peak()
    print(f"encoder {args.encoder.name}: {flops / 1e9:.3f} GFLOP per {side} px image (matrix products)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; native bf16 (auto picks it): {cpu_has_bf16()}")
    if peak is None:
        print("CPU peak unknown (no /proc/cpuinfo): share of peak not printed")
    else:
        print(f"CPU: {peak.describe()}")
        print("peak assumptions: " + "; ".join(peak.assumptions))
    print(f"batch sizes {args.sizes}, {args.repeats} timed call(s) each after a batch-1 warm-up; ways {args.ways}")
    return flops, peak


def encoder_table(runs: dict[str, dict], flops: float, peak: CpuPeak | None, args: argparse.Namespace) -> None:
    """The encoder-only rows: s/image (best, median), GFLOP/s, share of peak, drift from torch float32."""
    big = str(args.sizes[-1])
    ref_ok = REFERENCE in runs and not runs[REFERENCE].get("failed")
    ref = {k: np.load(args.cache / f"out-{REFERENCE}-{k}.npy") for k in ("features", "centred")} if ref_ok else {}
    print(f"\n| way | runs as | s/img batch {args.sizes[0]} (best) | s/img batch {big} best / median | GFLOP/s "
          "| % fp32 peak | % peak of its precision | min cosine | max abs delta centred | load s | peak RSS MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for way, run in runs.items():
        if run.get("failed"):
            print(f"| {way} | failed | | | | | | | | | |")
            continue
        small = min(run["batches"][str(args.sizes[0])]) / args.sizes[0]
        best, median = min(run["batches"][big]) / int(big), statistics.median(run["batches"][big]) / int(big)
        gflops = flops / median / 1e9
        precision = run["runs_as"].get("precision", "float32")
        shares = ("", "") if peak is None else (
            f"{100 * gflops / peak.peak_gflops('float32'):.0f} %", f"{100 * gflops / peak.peak_gflops(precision):.0f} %"
        )
        drift = ("", "")
        if ref:
            out = {k: np.load(args.cache / f"out-{way}-{k}.npy") for k in ("features", "centred")}
            a, b = out["features"], ref["features"]
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            drift = (f"{cos.min():.6f}", f"{np.abs(out['centred'] - ref['centred']).max():.2e}")
        runs_as = f"{run['runs_as'].get('backend')} {precision}"
        print(f"| {way} | {runs_as} | {small:.3f} | {best:.3f} / {median:.3f} | {gflops:.1f} | {shares[0]} | {shares[1]} "
              f"| {drift[0]} | {drift[1]} | {run['load_s']:.1f} | {run['peak_rss_mb']:.0f} |")
    print("\n(GFLOP/s and shares from the median at the largest batch; int8 ways counted in int8 ops against the "
          "int8 peak, although only the matrix products with weights are int8; random weights cannot judge "
          "int8's accuracy on faces, only its drift from float32 here)")


def end_to_end(runs: dict[str, dict], args: argparse.Namespace) -> None:
    """Whole ``predict`` processes per way, beside the encoder-only time: are they the same path?

    Each way runs ``predict`` on ``--images`` photos and on one batch of them; the difference over the
    difference in photos is ``predict``'s own time per image, start-up cancelled."""
    big = args.sizes[-1]
    env = run_env(args.cache / "compiled")
    folders = {n: face_photos(args.cache / f"photos-{n}", n)[0].parent for n in (args.images, big)}
    print(f"\n| way | predict {args.images} photos, s | s/img | predict {big} photos, s | predict s/img, start-up "
          f"cancelled | encoder only s/img (batch {big}, median) | encoder / predict | within 10 % |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for way, run in runs.items():
        done = {n: run_predict(folder, args.cache / f"e2e-{way}-{n}.csv", [], way_options(way, args), env, big)
                for n, folder in folders.items()}
        failed = [d["failed"] for d in done.values() if "failed" in d] + (["encoder-only run failed"] if run.get("failed") else [])
        if failed:
            print(f"| {way} | failed: {failed[0][-200:]!r} | | | | | | |")
            continue
        whole, one = done[args.images]["seconds"], done[big]["seconds"]
        steady = (whole - one) / (args.images - big)
        encoder = statistics.median(run["batches"][str(big)]) / big
        ratio = encoder / steady
        print(f"| {way} | {whole:.1f} | {whole / args.images:.3f} | {one:.1f} | {steady:.3f} | {encoder:.3f} "
              f"| {ratio:.2f} | {'yes' if 0.9 <= ratio <= 1.1 else 'NO'} |")
    print("\n(predict: `python -m emonet_face predict PHOTOS --faces none --batch-size B` with the way's model "
          "options, warm conversion cache, one process after the other; it decodes photos in a worker process "
          "beside the encoder. Start-up cancelled = (time for all photos - time for one batch) / the difference "
          "in photos. A tiny model is all start-up: compare at real size)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/emonet-face-bench-encoder"),
                        help="random models, photos, converted encoders and outputs (kept between runs)")
    parser.add_argument("--real-size", action="store_true", help="the so400m/16-384 architecture (built once)")
    parser.add_argument("--encoder", type=Path, help="a checkpoint folder instead of a random one")
    parser.add_argument("--heads", type=Path, help="a heads folder instead of random ones")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ways", default="torch-float32,openvino-float32,onnx-float32,int8",
                        help=f"comma list of {', '.join(WAYS)}")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per batch size (best and median kept)")
    parser.add_argument("--images", type=int, default=24, help="photos for the end-to-end predict runs")
    parser.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end predict runs")
    parser.add_argument("--cold", action="store_true", help="clear converted encoders and exports first")
    parser.add_argument("--way-probe", choices=list(WAYS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.passed = [a for a in sys.argv[1:] if a != "--cold"]
    args.sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.ways = [w for w in args.ways.split(",") if w]
    if not args.skip_e2e and args.images <= args.sizes[-1]:
        parser.error(f"--images {args.images}: more than the largest batch size ({args.sizes[-1]}) for the end-to-end rows")
    unknown = sorted(set(args.ways) - set(WAYS))
    if unknown:
        parser.error(f"unknown ways {', '.join(unknown)}; choose from {', '.join(WAYS)}")
    if args.encoder is None or args.heads is None:
        encoder, heads = build_models(args.cache, real_size=args.real_size)
        args.encoder, args.heads = args.encoder or encoder, args.heads or heads
    return args


def main() -> None:
    args = parse_args()
    if args.way_probe:
        way_probe(args.way_probe, args)
        return
    if args.cold:
        shutil.rmtree(args.cache / "compiled", ignore_errors=True)
        for folder in args.cache.glob("exported-*"):
            shutil.rmtree(folder, ignore_errors=True)
    flops, peak = header(args)
    peak = peak if args.device == "cpu" else None  # a GPU run: no CPU share of peak
    runs = {}
    for way in args.ways:
        runs[way] = run_way(way, args)
        print(f"  {way}: {json.dumps(runs[way], default=str)}", flush=True)
    encoder_table(runs, flops, peak, args)
    if not args.skip_e2e:
        end_to_end(runs, args)


if __name__ == "__main__":
    main()
