"""Load-test ``emonet-face serve`` on loopback: dynamic batching on (``--max-batch-size 16``) vs off
(``--max-batch-size 1``) with 1, 4 and 16 concurrent clients; resident memory after 100 and after
2,000 requests; 503s under an overload. Every server is a real ``emonet-face serve`` subprocess.

    python benchmarks/bench_serve.py                      # small model only (a minute or two)
    python benchmarks/bench_serve.py --real-size          # + the random so400m checkpoint (slow on CPU)

Each request posts one distinct 256×256 JPEG with ``faces=none`` (one encoder input per request, so
the encoder sees exactly what batching gives it). Counts and time are bounded (``--requests``,
``--seconds``). Throughput = successful requests / wall time; latencies are per request.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
REAL_SIZE = Path("/tmp/emonet-face-bench-encoder/siglip2-so400m-patch16-384-random")
SO400M_DIM = 1152


def build_small_model(folder: Path, *, hidden: int, layers: int, image_size: int) -> tuple[Path, Path]:
    """A random SigLIP (``hidden`` wide, ``layers`` deep) and random heads of the released small
    model's architecture, in the released layout."""
    import json

    import torch
    from transformers import SiglipConfig, SiglipModel

    from emonet_face.runtime.encoder import siglip2_preprocessor_config

    encoder, heads = folder / "encoder", folder / "heads"
    if not (encoder / "config.json").is_file():
        torch.manual_seed(0)
        vision = {"hidden_size": hidden, "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
                  "num_attention_heads": max(1, hidden // 64), "image_size": image_size, "patch_size": 16}  # fmt: skip
        text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                "vocab_size": 99}  # fmt: skip
        SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).eval().save_pretrained(encoder)
        (encoder / "preprocessor_config.json").write_text(json.dumps(siglip2_preprocessor_config(image_size)))
    write_heads(heads, hidden, "small")
    return encoder, heads


def write_heads(folder: Path, in_dim: int, size: str) -> Path:
    """44 random heads of a released architecture (``large`` or ``small``; values do not change timing)."""
    import json

    import torch

    from emonet_face import taxonomy as tx
    from emonet_face.heads import HEAD_ARCHITECTURES, HeadArchitecture, build_head_module

    if (folder / tx.NEUTRAL_STATS_FILENAME).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    arch = HeadArchitecture(in_dim, HEAD_ARCHITECTURES[size])
    torch.manual_seed(0)
    stats = {}
    for key in tx.HEAD_KEYS:
        torch.save(build_head_module(arch).state_dict(), folder / tx.head_file_name(key))
        stats[tx.head_stats_key(key)] = {"mean": 0.0, "std": 1.0}
    (folder / tx.NEUTRAL_STATS_FILENAME).write_text(json.dumps(stats))
    return folder


def jpegs(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``emonet-face serve`` in a subprocess, stopped with SIGTERM."""

    def __init__(
        self, encoder: Path, heads: Path, *extra: str, threads: int | None = None, backend: str = "auto",
        faces: str = "none", log: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        command = [sys.executable, "-m", "emonet_face", "serve", "--encoder", str(encoder), "--heads", str(heads),
                   "--device", "cpu", "--faces", faces, "--port", str(self.port), "--backend", backend, *extra]  # fmt: skip
        # open as long as the server runs; a named log is opened for appending: its stdout and stderr
        # writes then never overwrite each other, however the server's libraries handle the two
        self.log = tempfile.TemporaryFile() if log is None else open(log, "ab+")  # noqa: SIM115
        self.proc = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become healthy")

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_s(self) -> float:
        """CPU seconds the server process has used (user + system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def mean_batch(self) -> float:
        batches = httpx.get(f"{self.url}/v1/info").json()["batches"]
        return batches["items"] / max(1, batches["run"])


def upload(url: str, images: list[bytes]):
    """Request ``i``: one JPEG (a different one each time) as a multipart ``file`` field."""

    def send(session: httpx.Client, i: int) -> httpx.Response:
        return session.post(f"{url}/v1/predict", files={"file": (f"img{i}.jpg", images[i % len(images)])})

    return send


def load(url: str, images: list[bytes] | Callable, clients: int, requests: int, seconds: float) -> dict:
    """``requests`` POSTs from ``clients`` threads (stopping early after ``seconds``); ``images``
    are uploaded one per request, or ``images`` is a ``send(session, i)`` function."""
    send = images if callable(images) else upload(url, images)
    latencies: list[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    counter = iter(range(requests))
    stop_at = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=600) as session:
            while time.monotonic() < stop_at:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    status = send(session, i).status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - start
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        latencies.append(elapsed)

    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    raw = {"statuses": dict(statuses), "latencies": np.array(latencies), "wall": time.perf_counter() - start,
           "client_cpu": time.process_time() - cpu}  # fmt: skip
    return {**raw, **merge([raw])}


def compare(name: str, encoder: Path, heads: Path, client_counts: list[int], requests: int, seconds: float,
            images: list[bytes], threads: int | None, rounds: int = 2, backend: str = "auto") -> None:  # fmt: skip
    """Both servers run side by side and are loaded in turn (``rounds`` times each, alternating), so
    that the shared machine's changing load hits both modes alike."""
    print(f"\n== {name}: batching on (--max-batch-size 16) vs off (--max-batch-size 1), faces=none, 1 image/request")
    print("(CPU ms/req: CPU time per answered request of the server process and of this load generator, on the same cores)")
    print(f"{'clients':>7} | {'mode':<9} | {'req/s':>7} | {'p50 ms':>8} | {'p99 ms':>8} | {'mean batch':>10} | "
          f"{'server CPU ms/req':>17} | {'client CPU ms/req':>17} | failed")  # fmt: skip
    modes = {"batch 16": "16", "batch 1": "1"}
    servers = {mode: Server(encoder, heads, "--max-batch-size", size, threads=threads, backend=backend)
               for mode, size in modes.items()}  # fmt: skip
    rps: dict[tuple[int, str], float] = {}
    try:
        for server in servers.values():
            server.__enter__()
            load(server.url, images, 1, 3, 60)  # warm-up
        for clients in client_counts:
            runs: dict[str, list[dict]] = {mode: [] for mode in modes}
            batches: dict[str, list[int]] = {mode: [0, 0] for mode in modes}
            server_cpu = dict.fromkeys(modes, 0.0)
            for _ in range(rounds):
                for mode, server in servers.items():
                    before = httpx.get(f"{server.url}/v1/info").json()["batches"]
                    cpu = server.cpu_s()
                    runs[mode].append(load(server.url, images, clients, requests // rounds, seconds / rounds))
                    server_cpu[mode] += server.cpu_s() - cpu
                    after = httpx.get(f"{server.url}/v1/info").json()["batches"]
                    batches[mode][0] += after["items"] - before["items"]
                    batches[mode][1] += after["run"] - before["run"]
            for mode in modes:
                r = merge(runs[mode])
                rps[clients, mode] = r["rps"]
                batch = batches[mode][0] / max(1, batches[mode][1])
                ok = max(1, r["ok"])
                client_cpu = sum(run["client_cpu"] for run in runs[mode])
                print(f"{clients:>7} | {mode:<9} | {r['rps']:>7.2f} | {r['p50']:>8.1f} | {r['p99']:>8.1f} | "
                      f"{batch:>10.1f} | {1000 * server_cpu[mode] / ok:>17.1f} | {1000 * client_cpu / ok:>17.1f} | "
                      f"{r['failed']} {r['statuses'] if r['failed'] else ''}", flush=True)  # fmt: skip
    finally:
        for server in servers.values():
            server.__exit__()
    for clients in client_counts:
        ratio = rps[clients, "batch 16"] / rps[clients, "batch 1"]
        print(f"{clients:>2} clients: throughput batching on / off = {ratio:.2f}x")


def model_ceiling(encoder: Path, heads: Path, images: list[bytes], threads: int | None, backend: str) -> None:
    """The model alone, in this process, with the server's threads: encoder + heads per image at
    batch 1 and 16. Their ratio is what batching can buy at most, with no per-request work at all."""
    import torch

    from emonet_face.pipeline import EmoNetFace

    if threads:
        torch.set_num_threads(threads)
    net = EmoNetFace.from_pretrained("small", encoder=str(encoder), heads=str(heads), device="cpu", backend=backend)
    pixels = net.encoder.preprocess([Image.open(io.BytesIO(data)).convert("RGB") for data in images[:16]])
    per_image = {}
    for size in (1, 16):
        batch = {k: v[:size] for k, v in pixels.items()}
        net.raw_scores(net.encoder(**batch))  # warm-up
        calls = max(3, 96 // size)
        start = time.perf_counter()
        for _ in range(calls):
            net.raw_scores(net.encoder(**batch))
        per_image[size] = (time.perf_counter() - start) / calls / size * 1000
    print(f"\n== the model alone ({net.describe()['encoder'].get('backend')}, {threads or torch.get_num_threads()} thread(s)):"
          f" encoder + heads {per_image[1]:.2f} ms/image at batch 1, {per_image[16]:.2f} ms/image at batch 16:"
          f" at most {per_image[1] / per_image[16]:.2f}x from batching")  # fmt: skip


def merge(runs: list[dict]) -> dict:
    statuses: Counter = Counter()
    for r in runs:
        statuses.update(r["statuses"])
    latencies = np.concatenate([r["latencies"] for r in runs]) if runs else np.array([np.nan])
    return {
        "ok": statuses.get(200, 0),
        "failed": sum(v for k, v in statuses.items() if k != 200),
        "statuses": dict(statuses),
        "rps": statuses.get(200, 0) / sum(r["wall"] for r in runs),
        "p50": float(np.percentile(latencies, 50)) * 1000 if latencies.size else float("nan"),
        "p99": float(np.percentile(latencies, 99)) * 1000 if latencies.size else float("nan"),
    }


def memory_and_overload(encoder: Path, heads: Path, images: list[bytes], threads: int | None, backend: str) -> None:
    print("\n== resident memory (batching on, 16 clients)")
    with Server(encoder, heads, threads=threads, backend=backend) as server:
        r100 = load(server.url, images, 16, 100, 600)
        rss100 = server.rss_mb()
        r2000 = load(server.url, images, 16, 1900, 600)
        rss2000 = server.rss_mb()
        print(f"RSS after 100 requests: {rss100:.0f} MB; after 2,000: {rss2000:.0f} MB "
              f"({rss2000 - rss100:+.0f} MB); failed: {r100['failed'] + r2000['failed']}")  # fmt: skip
    print("\n== overload: --max-queue 4, 32 clients x 8 requests, no retries")
    with Server(encoder, heads, "--max-queue", "4", threads=threads, backend=backend) as server:
        r = load(server.url, images, 32, 256, 600)
        print(f"answers: {r['statuses']} (200 = scored, 503 = refused with Retry-After; nothing else expected)")
        assert httpx.get(f"{server.url}/health").status_code == 200
        print("healthy afterwards: yes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/emonet-face-bench-serve"))
    parser.add_argument("--requests", type=int, default=320, help="requests per (mode, clients) run")
    parser.add_argument("--seconds", type=float, default=40, help="time limit per (mode, clients) run")
    parser.add_argument("--hidden", type=int, default=384, help="small model width")
    parser.add_argument("--layers", type=int, default=6, help="small model depth")
    parser.add_argument("--image-size", type=int, default=128, help="small model input side")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the server")
    parser.add_argument("--backend", default="auto", help="the servers' --backend (auto: OpenVINO on a CPU)")
    parser.add_argument("--real-size", action="store_true", help=f"also time {REAL_SIZE.name} (1 and 4 clients)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-small", action="store_true", help="only the real-size encoder (with --real-size)")
    args = parser.parse_args()

    images = jpegs(64)
    print(f"CPU cores: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.1f}")
    if not args.skip_small:
        encoder, heads = build_small_model(args.workdir / "small", hidden=args.hidden, layers=args.layers,
                                           image_size=args.image_size)  # fmt: skip
        name = f"small model (SigLIP {args.layers} layers x {args.hidden}, {args.image_size}px; small heads; --backend {args.backend})"
        model_ceiling(encoder, heads, images, args.threads, args.backend)
        compare(name, encoder, heads, [1, 4, 16], args.requests, args.seconds, images, args.threads,
                backend=args.backend)  # fmt: skip
        if not args.skip_memory:
            memory_and_overload(encoder, heads, images, args.threads, args.backend)
    if args.real_size:
        if not (REAL_SIZE / "model.safetensors").is_file():
            print(f"\n{REAL_SIZE} is missing: build it with benchmarks/bench_encoder.py")
        else:
            real_heads = write_heads(args.workdir / f"heads-{SO400M_DIM}", SO400M_DIM, "large")
            compare("real-size so400m (random weights)", REAL_SIZE, real_heads, [1, 4], 4, 600, images, args.threads, rounds=1)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (the machine is shared: absolute figures vary)")


if __name__ == "__main__":
    main()
