"""Local engine vs Ray engine on WebDataset shards: throughput, start-up overhead, peak memory, and
the memory of one shard as shards grow.

    python benchmarks/bench_scale.py                       # tiny encoder, 512 images, + memory vs shard size
    python benchmarks/bench_scale.py --real 4              # + the real-size so400m encoder on 2 shards × 2 images
    python benchmarks/bench_scale.py --images 0 --skip-memory --real 4   # the real-size part only

Every run is a real ``emonet-face predict`` subprocess (``--faces none``). Peak memory is the peak
summed RSS of the whole process tree (driver, DataLoader workers; for Ray also raylet, GCS and
workers), sampled every 0.1 s. Each engine runs a 16-image shard (≈ the start-up cost) and the
big set; throughput is given end to end (N / t_big) and marginal ((N_big − N_small) / (t_big −
t_small), start-up excluded; "n/a" when load noise swamps it). Ray runs start their own local Ray
(2 CPUs here), as ``--engine ray`` without ``--ray-address`` does.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
REAL = Path("/tmp/emonet-face-bench-encoder/siglip2-so400m-patch16-384-random")


def write_shards(folder: Path, n_shards: int, per_shard: int, side: int = 96, seed: int = 0) -> list[Path]:
    """img2dataset-like tars of random JPEGs (KEY.jpg + KEY.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for s in range(n_shards):
        path = folder / f"{s:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(per_shard):
                key = f"{s:05d}{i:04d}"
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, format="JPEG")
                for name, data in ((f"{key}.jpg", buffer.getvalue()), (f"{key}.json", json.dumps({"key": key}).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


def tiny_model(folder: Path) -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_heads, build_tiny_siglip

    enc, heads = folder / "enc", folder / "heads"
    if not enc.is_dir():
        enc.mkdir(parents=True)
        heads.mkdir(parents=True)
        build_tiny_siglip(enc)
        build_tiny_heads(heads)
    return ["--encoder", str(enc), "--heads", str(heads)]


def run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of the process tree of one ``emonet-face`` run."""
    command = [sys.executable, "-m", "emonet_face", *args]
    start = time.perf_counter()
    proc = psutil.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr.read().decode()[-3000:]}")
    return seconds, peak / 2**30


def engine_args(engine: str, out: Path) -> list[str]:
    if engine == "local":
        return ["--out", str(out.with_suffix(".parquet"))]
    return ["--out", str(out), "--engine", "ray", "--actors", "1"]


def compare_engines(work: Path, model: list[str], small: list[Path], big: list[Path], n_small: int, n_big: int,
                    label: str, batch: int) -> None:
    """Runs interleaved (local small, ray small, local big, ray big) so that both engines see the
    same load on a shared machine."""
    print(f"\n## {label}: local vs Ray engine ({n_big} images in {len(big)} shards, {n_small} for start-up)")
    common = ["predict", "--faces", "none", "--device", "cpu", "-b", str(batch), "-q", *model]
    times: dict[tuple[str, str], tuple[float, float]] = {}
    for size, shards in (("small", small), ("big", big)):
        for engine in ("local", "ray"):
            times[engine, size] = run([*common, *map(str, shards), *engine_args(engine, work / f"{label}-{engine}-{size}")])
    print(f"{'engine':8} {'t_small s':>9} {'t_big s':>8} {'img/s end-to-end':>16} {'img/s marginal':>14} {'peak GiB':>9}")
    rates = {}
    for engine in ("local", "ray"):
        (t_small, _), (t_big, peak) = times[engine, "small"], times[engine, "big"]
        rates[engine] = n_big / t_big
        marginal = f"{(n_big - n_small) / (t_big - t_small):14.2f}" if t_big > t_small else f"{'n/a':>14}"
        print(f"{engine:8} {t_small:9.1f} {t_big:8.1f} {rates[engine]:16.2f} {marginal} {peak:9.2f}")
    print(f"ray / local end-to-end throughput: {rates['ray'] / rates['local']:.2f}")


def shard_memory(work: Path, model: list[str]) -> None:
    print("\n## Local engine, one shard growing: peak memory stays flat (segments of 16 samples)")
    print(f"{'images':>7} {'shard MiB':>9} {'seconds':>8} {'peak GiB':>9}")
    for n in (64, 256, 1024):
        shard = write_shards(work / f"grow-{n}", 1, n, side=160, seed=n)[0]
        seconds, peak = run(["predict", "--faces", "none", "--device", "cpu", "-q", *model, str(shard),
                             "--out", str(work / f"grow-{n}.parquet")])
        print(f"{n:7d} {shard.stat().st_size / 2**20:9.1f} {seconds:8.1f} {peak:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="images of the big run (tiny encoder; 0: skip)")
    parser.add_argument("--real", type=int, default=0, help="images for the real-size encoder (0: skip)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"cpus: {psutil.cpu_count()}, load average: {', '.join(f'{x:.1f}' for x in psutil.getloadavg())}")
    model = tiny_model(work / "tiny")
    per_shard = 64
    if args.images:
        big = write_shards(work / "big", args.images // per_shard, per_shard)
        small = write_shards(work / "small", 1, 16, seed=99)
        compare_engines(work, model, small, big, 16, len(big) * per_shard, "tiny", batch=32)
    if not args.skip_memory:
        shard_memory(work, model)
    if args.real:
        if not (REAL / "model.safetensors").is_file():
            raise SystemExit(f"{REAL}: build it first with benchmarks/bench_encoder.py")
        real_model = ["--encoder", str(REAL), "--heads", model[3]]
        # real-size heads need 1152-dim inputs: random heads of the released layout, that width
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_tiny_heads

        heads = work / "heads-1152"
        if not heads.is_dir():
            heads.mkdir()
            build_tiny_heads(heads, in_dim=1152, hidden=(64, 32))
        real_model[3] = str(heads)
        half = max(1, args.real // 2)
        big_real = write_shards(work / "real-big", 2, half, side=384, seed=7)
        small_real = write_shards(work / "real-small", 1, 1, side=384, seed=8)
        compare_engines(work, real_model, small_real, big_real, 1, 2 * half, "so400m", batch=2)
    print(f"\n(work folder: {work})")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
