"""Live streams on loopback: ``emonet-face serve`` in a subprocess, 1, 2 and 4 WebSocket clients on
``/v1/stream``, each sending a clip made from a real portrait at 30 frames per second.

    python benchmarks/bench_live.py                   # tiny model (about 3 minutes)
    python benchmarks/bench_live.py --real-size       # + the random so400m checkpoint (short runs)

For each number of streams: frames sent and answered (the server skips what it cannot score in
time: newest frame wins), answers per second, latency from sending a frame to its answer (p50,
p95) and p95 as a ratio of **one frame's scoring time** (the same server answering one frame at a
time, measured first in the same run: the target is p95 ≤ 2×), latency growth (p50 of the last
third of the answers over the first third: the target is no growth), mean encoder batch (frames of
several streams share batches), failed frames (error answers, or the last frame of a stream never
answered: target 0) and the server's resident memory after 100 and after 2,000 frames sent.

Faces are detected (``--faces detect``, BlazeFace) in 640×360 JPEG frames, one face per frame.
The clients run on the same cores as the server; the machine is shared, so absolute figures vary
from run to run: read the ratios.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from websockets.sync.client import connect

from bench_serve import REAL_SIZE, SO400M_DIM, build_small_model, free_port, write_heads  # this folder

ROOT = Path(__file__).resolve().parents[1]
FPS = 30


def portrait_frames(n: int = 60) -> list[bytes]:
    """The astronaut's head (a real portrait) moving to and fro across a grey 640×360 frame, as JPEG."""
    from skimage import data

    head = Image.fromarray(data.astronaut()).crop((130, 20, 330, 220))
    frames = []
    for i in range(n):
        canvas = Image.new("RGB", (640, 360), (128, 128, 128))
        step = i if i < n // 2 else n - i
        canvas.paste(head, (100 + 8 * step, 80))
        buffer = io.BytesIO()
        canvas.save(buffer, "JPEG", quality=85)
        frames.append(buffer.getvalue())
    return frames


class Server:
    """``emonet-face serve`` in a subprocess, stopped with SIGTERM (must exit 0)."""

    def __init__(self, encoder: Path, heads: Path, cache: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src"), "EMONET_FACE_CACHE": str(cache)}
        command = [sys.executable, "-m", "emonet_face", "serve", "--encoder", str(encoder), "--heads", str(heads),
                   "--device", "cpu", "--faces", "detect", "--port", str(self.port), *extra]  # fmt: skip
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the server runs
        self.proc = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server did not become healthy")

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
            if code != 0:
                print(f"!! the server exited {code} on SIGTERM")
        except subprocess.TimeoutExpired:
            self.proc.kill()
            print("!! the server did not stop on SIGTERM")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def batches(self) -> tuple[int, int]:
        info = httpx.get(f"{self.url}/v1/info", timeout=30).json()["batches"]
        return info["items"], info["run"]


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/v1/stream"


def one_frame_time(url: str, frames: list[bytes], n: int) -> float:
    """Median seconds from sending a frame to its answer when the server has nothing else to do."""
    times = []
    with connect(ws_url(url), open_timeout=60, max_size=None) as ws:
        for i in range(n + 1):
            start = time.perf_counter()
            ws.send(frames[i % len(frames)])
            answer = json.loads(ws.recv(timeout=600))
            assert "error" not in answer, answer
            if i:  # the first one warms up
                times.append(time.perf_counter() - start)
    return statistics.median(times)


class Stream:
    """One client: sends frames at ``FPS`` from one thread, reads answers in another."""

    def __init__(self, url: str, frames: list[bytes], counter: list[int], lock: threading.Lock) -> None:
        self._connection = connect(ws_url(url), open_timeout=60, max_size=None)
        self.ws = self._connection.__enter__()  # closed in finish()
        self.frames = frames
        self.counter, self.lock = counter, lock
        self.sent_at: dict[int, float] = {}
        self.latencies: list[tuple[float, float]] = []  # (answer time, latency)
        self.errors: list[str] = []
        self.answered: list[int] = []
        self.sent = 0
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        try:
            while True:
                answer = json.loads(self.ws.recv())
                now = time.perf_counter()
                self.answered.append(answer["frame"])
                if "error" in answer:
                    self.errors.append(answer["error"])
                else:
                    self.latencies.append((now, now - self.sent_at[answer["frame"]]))
        except Exception:  # closed
            return

    def send_for(self, stop: threading.Event) -> None:
        start = time.perf_counter()
        while not stop.is_set():
            due = start + self.sent / FPS
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.sent_at[self.sent] = time.perf_counter()
            self.ws.send(self.frames[self.sent % len(self.frames)])
            self.sent += 1
            with self.lock:
                self.counter[0] += 1

    def finish(self, timeout: float) -> bool:
        """Wait for the answer to the last frame sent; True when it came."""
        deadline = time.monotonic() + timeout
        last = self.sent - 1
        while time.monotonic() < deadline and (not self.answered or self.answered[-1] < last):
            time.sleep(0.01)
        ok = bool(self.answered) and self.answered[-1] == last
        self._connection.__exit__(None, None, None)
        self.reader.join(5)
        return ok


def run_streams(server: Server, frames: list[bytes], n_streams: int, target_sent: int, max_seconds: float) -> dict:
    counter, lock = [0], threading.Lock()
    streams = [Stream(server.url, frames, counter, lock) for _ in range(n_streams)]
    items0, runs0 = server.batches()
    stop = threading.Event()
    senders = [threading.Thread(target=s.send_for, args=(stop,), daemon=True) for s in streams]
    start = time.perf_counter()
    for thread in senders:
        thread.start()
    rss = {}
    while time.perf_counter() - start < max_seconds and counter[0] < target_sent:
        for mark in (100, 2000):
            if mark not in rss and counter[0] >= mark:
                rss[mark] = server.rss_mb()
        time.sleep(0.02)
    for mark in (100, 2000):
        if mark not in rss and counter[0] >= mark:
            rss[mark] = server.rss_mb()
    stop.set()
    for thread in senders:
        thread.join()
    wall = time.perf_counter() - start
    last_ok = [s.finish(timeout=600) for s in streams]
    items1, runs1 = server.batches()
    latencies = [lat for s in streams for _, lat in sorted(s.latencies)]
    ordered = [lat for _, lat in sorted((t, lat) for s in streams for t, lat in s.latencies)]
    third = max(1, len(ordered) // 3)
    answered = sum(len(s.latencies) for s in streams)
    in_order = all(s.answered == sorted(set(s.answered)) for s in streams)
    return {
        "streams": n_streams,
        "sent": sum(s.sent for s in streams),
        "answered": answered,
        "per_s": answered / wall,
        "p50": float(np.percentile(latencies, 50)) if latencies else float("nan"),
        "p95": float(np.percentile(latencies, 95)) if latencies else float("nan"),
        "growth": statistics.median(ordered[-third:]) / statistics.median(ordered[:third]) if ordered else float("nan"),
        "failed": sum(len(s.errors) for s in streams) + last_ok.count(False),
        "in_order": in_order,
        "batch": (items1 - items0) / max(1, runs1 - runs0),
        "rss": rss,
        "wall": wall,
    }


def report(name: str, server: Server, frames: list[bytes], counts: list[int], target_sent: int, max_seconds: float,
           baseline_frames: int) -> None:  # fmt: skip
    one = one_frame_time(server.url, frames, baseline_frames)
    print(f"\n== {name}: one frame alone (answer time, median of {baseline_frames}): {one * 1000:.0f} ms")
    print(f"{'streams':>7} | {'sent':>5} | {'answered':>8} | {'answers/s':>9} | {'p50 ms':>7} | {'p95 ms':>7} | "
          f"{'p95/one':>7} | {'growth':>6} | {'batch':>5} | {'failed':>6} | {'RSS@100':>8} | {'RSS@2000':>8}")  # fmt: skip
    for n in counts:
        r = run_streams(server, frames, n, target_sent, max_seconds)
        rss100 = f"{r['rss'][100]:.0f} MB" if 100 in r["rss"] else "-"
        rss2000 = f"{r['rss'][2000]:.0f} MB" if 2000 in r["rss"] else "-"
        print(f"{n:>7} | {r['sent']:>5} | {r['answered']:>8} | {r['per_s']:>9.2f} | {r['p50'] * 1000:>7.0f} | "
              f"{r['p95'] * 1000:>7.0f} | {r['p95'] / one:>7.2f} | {r['growth']:>6.2f} | {r['batch']:>5.2f} | "
              f"{r['failed']:>6} | {rss100:>8} | {rss2000:>8}" + ("" if r["in_order"] else "  !! answers out of order"),
              flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/emonet-face-bench-live"))
    parser.add_argument("--streams", default="1,2,4")
    parser.add_argument("--frames", type=int, default=2000, help="frames sent per run (all streams together)")
    parser.add_argument("--seconds", type=float, default=90, help="longest run (tiny model)")
    parser.add_argument("--real-size", action="store_true", help=f"also the random {REAL_SIZE.name}")
    parser.add_argument("--real-seconds", type=float, default=25, help="run length with the real-size encoder")
    parser.add_argument("--skip-tiny", action="store_true")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    flags = sorted(set(Path("/proc/cpuinfo").read_text().split()) & {"avx512_bf16", "avx512_vnni", "amx_bf16"})
    print(f"CPU cores: {os.cpu_count()}; flags: {' '.join(flags) or 'none of avx512_bf16/avx512_vnni/amx_bf16'}; "
          f"load average at start: {os.getloadavg()[0]:.1f}; {FPS} fps per stream")  # fmt: skip
    frames = portrait_frames()
    cache = args.workdir / "compiled"
    if not args.skip_tiny:
        encoder, heads = build_small_model(args.workdir / "tiny", hidden=32, layers=2, image_size=32)
        with Server(encoder, heads, cache) as server:
            report("tiny model (SigLIP 2 layers x 32, 32 px; small heads; --backend auto)", server, frames, counts,
                   args.frames, args.seconds, 20)  # fmt: skip
    if args.real_size:
        if not (REAL_SIZE / "model.safetensors").is_file():
            print(f"\n{REAL_SIZE} is missing: build it with benchmarks/bench_encoder.py")
        else:
            heads = write_heads(args.workdir / f"heads-{SO400M_DIM}", SO400M_DIM, "large")
            with Server(REAL_SIZE, heads, cache) as server:
                report("real-size so400m (random weights; large heads; --backend auto)", server, frames, counts,
                       args.frames, args.real_seconds, 3)  # fmt: skip
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (the machine is shared: absolute figures vary)")


if __name__ == "__main__":
    main()
