"""Soak ``emonet-face serve`` for a fixed time with a mix of good and bad clients, and check that
nothing is lost and nothing grows.

    python benchmarks/bench_soak.py --minutes 30                 # tiny model, server defaults
    python benchmarks/bench_soak.py --minutes 5 --json soak.json
    python benchmarks/bench_soak.py --encoder DIR --heads DIR     # another model

The server is a real ``emonet-face serve`` subprocess with its default settings (``--faces auto``,
two decode threads on two cores). After a warm-up (every kind of client, ``--warmup-s``), these
run side by side for ``--minutes``, each in its own thread:

* **valid** requests: ``--clients`` threads post one JPEG each (a portrait or a picture without a
  face, in turn) to ``POST /v1/predict`` and expect 200 with rows: every other answer is a failure;
* **invalid** requests: a corrupt JPEG (expects 400) and an image in a field named ``image``
  (expects 400), in turn;
* **abandoned** uploads: a multipart upload whose client closes the socket half-way;
* **streams**: normal ones (``/v1/stream``, 20 frames, every reply read, closed properly), streams
  that **vanish** (a frame sent, then the TCP socket closed without a close frame, half of them with
  a reset), and **stalled** readers (frames sent, no reply ever read, until the server closes them:
  after its ``--send-timeout-s`` once their buffers are full, or when its keep-alive pings go
  unanswered, 40 s; a reader still open after 60 s counts as an error).

Reported: per quarter of the run, valid requests answered per second and their p50 / p99 latency,
stream frames answered; errors by kind; the server's resident memory (psutil RSS) at the start
(after the warm-up), the middle and the end, and its median per quarter; the live streams the
server still counts open once the clients are gone; tracebacks in the server log.

Pass / fail: memory growth from the first to the last quarter (medians of the RSS samples) under
5 %; no valid request failing; p99 not growing: the last quarter's p99 at most 1.5x the first
quarter's (the machine is shared, so a looser bound than the medians would need); no stream left
open; no traceback in the server log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
from websockets.sync.client import connect

from bench_live import portrait_frames  # this folder
from bench_serve import Server, build_small_model, jpegs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from raw_websocket import vanish, ws_binary_frame, ws_handshake

MEMORY_GROWTH_LIMIT = 0.05
P99_GROWTH_LIMIT = 1.5
SAMPLE_S = 5.0


def abandoned_upload(port: int, image: bytes, sent_fraction: float = 0.5) -> None:
    """A multipart ``POST /v1/predict`` whose client closes the socket after ``sent_fraction`` of the body."""
    head = (b'--soak\r\nContent-Disposition: form-data; name="file"; filename="cut.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n")  # fmt: skip
    body = head + image + b"\r\n--soak--\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=soak\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        sock.sendall(body[: int(len(body) * sent_fraction)])
        time.sleep(0.2)


# --- the run ----------------------------------------------------------------------------------------
@dataclass
class Tally:
    """What the clients saw, shared by their threads."""

    started: float = field(default_factory=time.monotonic)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since the start, latency in s) of every valid request answered 200."""
    frames: list[float] = field(default_factory=list)
    """Seconds since the start of every stream reply received by a normal stream."""
    stalls_closed_after: list[float] = field(default_factory=list)
    """Seconds from a stalled reader's first frame until the server closed it."""
    counts: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str, error: str | None = None) -> None:
        with self.lock:
            self.counts[kind] += 1
            if error:
                self.errors[f"{kind}: {error}"] += 1


class Soak:
    """The client threads against one server until ``stop`` is set."""

    def __init__(self, server: Server, clients: int, stop: threading.Event) -> None:
        self.server = server
        self.clients = clients
        self.stop = stop
        self.tally = Tally()
        faces = portrait_frames(8)
        self.images = [image for pair in zip(faces, jpegs(8, seed=1)) for image in pair]

    def valid(self, worker: int) -> None:
        with httpx.Client(base_url=self.server.url, timeout=120) as session:
            for i in self._turns(worker):
                image = self.images[i % len(self.images)]
                start = time.monotonic()
                try:
                    answer = session.post("/v1/predict", files={"file": (f"{i}.jpg", image)})
                    ok = answer.status_code == 200 and bool(answer.json()["rows"])
                    error = None if ok else f"HTTP {answer.status_code} {answer.text[:80]}"
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                now = time.monotonic()
                if error is None:
                    with self.tally.lock:
                        self.tally.latencies.append((now - self.tally.started, now - start))
                self.tally.count("valid request", error)

    def invalid(self) -> None:
        corrupt = b"\xff\xd8\xff\xe0" + os.urandom(4000)
        with httpx.Client(base_url=self.server.url, timeout=120) as session:
            for i in self._turns(pause=0.5):
                kind, files = (("corrupt image", {"file": ("bad.jpg", corrupt)}) if i % 2 == 0 else
                               ("wrong field", {"image": ("good.jpg", self.images[0])}))  # fmt: skip
                try:
                    status = session.post("/v1/predict", files=files).status_code
                    self.tally.count(f"invalid request ({kind})", None if status == 400 else f"HTTP {status}")
                except httpx.HTTPError as exc:
                    self.tally.count(f"invalid request ({kind})", type(exc).__name__)

    def abandoned(self) -> None:
        big = self.images[0] * 40  # a few MB: the server has written part of it when the client goes
        for i in self._turns(pause=1.0):
            self._guard("abandoned upload", lambda i=i: abandoned_upload(self.server.port, big, 0.2 + 0.6 * (i % 2)))

    def streams(self) -> None:
        for _ in self._turns(pause=0.5):
            self._guard("normal stream", self._one_stream)

    def vanishing(self) -> None:
        for i in self._turns(pause=1.0):
            self._guard("vanishing stream", lambda i=i: self._vanish_once(reset=i % 2 == 1))

    def stalled(self) -> None:
        for _ in self._turns(pause=1.0):
            self._guard("stalled reader", self._stall_once)

    def _one_stream(self) -> None:
        with connect(f"ws://127.0.0.1:{self.server.port}/v1/stream", max_size=None, open_timeout=30) as ws:
            for frame in self.images[:20]:
                ws.send(frame)
                reply = json.loads(ws.recv(timeout=60))
                if reply.get("error"):
                    raise RuntimeError(reply["error"][:80])
                with self.tally.lock:
                    self.tally.frames.append(time.monotonic() - self.tally.started)

    def _vanish_once(self, reset: bool) -> None:
        sock = ws_handshake(self.server.port)
        sock.sendall(ws_binary_frame(self.images[0]))
        vanish(sock, reset=reset)

    def _stall_once(self, longest_s: float = 60.0) -> None:
        """Frames sent, no reply ever read, until the server gives up on this client (the socket then
        fails) or ``longest_s``."""
        sock = ws_handshake(self.server.port, rcvbuf=4096)
        frame = ws_binary_frame(self.images[1])
        start = time.monotonic()
        try:
            while time.monotonic() < start + longest_s:
                if self.stop.is_set():
                    return  # the run ended first: neither outcome
                sock.sendall(frame)
                time.sleep(0.05)
        except OSError:  # the server closed the stalled client: what it should do
            with self.tally.lock:
                self.tally.stalls_closed_after.append(time.monotonic() - start)
            return
        finally:
            vanish(sock, reset=True)
        raise RuntimeError(f"not closed by the server within {longest_s:g} s")

    def _turns(self, worker: int = 0, pause: float = 0.0):
        i = worker * 1_000_000
        while not self.stop.is_set():
            yield i
            i += 1
            if pause:
                self.stop.wait(pause)

    def _guard(self, kind: str, action: Callable[[], None]) -> None:
        try:
            action()
            self.tally.count(kind)
        except Exception as exc:
            self.tally.count(kind, f"{type(exc).__name__}: {str(exc)[:80]}")

    def threads(self) -> list[threading.Thread]:
        targets: list[Callable[[], None]] = [lambda w=w: self.valid(w) for w in range(self.clients)]
        targets += [self.invalid, self.abandoned, self.streams, self.vanishing, self.stalled]
        return [threading.Thread(target=t, daemon=True) for t in targets]


def run(server: Server, clients: int, seconds: float) -> tuple[Tally, list[tuple[float, float]]]:
    """The clients for ``seconds``, and the server's RSS sampled every :data:`SAMPLE_S` s (seconds since
    the start, MB)."""
    stop = threading.Event()
    soak = Soak(server, clients, stop)
    process = psutil.Process(server.proc.pid)
    threads = soak.threads()
    for thread in threads:
        thread.start()
    memory = [(0.0, process.memory_info().rss / 2**20)]
    end = soak.tally.started + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(SAMPLE_S, left))
        memory.append((time.monotonic() - soak.tally.started, process.memory_info().rss / 2**20))
    stop.set()
    for thread in threads:
        thread.join(120)
    return soak.tally, memory


def open_streams(url: str, settle_s: float = 60.0) -> int:
    """Live streams the server counts open, polled until 0 or ``settle_s`` (stalled ones close after
    the server's send timeout, vanished ones after its keep-alive pings)."""
    deadline = time.monotonic() + settle_s
    while True:
        count = httpx.get(f"{url}/v1/info", timeout=30).json()["load"]["streams"]
        if count == 0 or time.monotonic() > deadline:
            return count
        time.sleep(1)


# --- the report -------------------------------------------------------------------------------------
def quarters(tally: Tally, memory: list[tuple[float, float]], seconds: float) -> list[dict]:
    rows = []
    for q in range(4):
        low, high = q * seconds / 4, (q + 1) * seconds / 4
        lat = np.array([v for t, v in tally.latencies if low <= t < high]) * 1000
        rss = [mb for t, mb in memory if low <= t <= high]
        rows.append({
            "quarter": q + 1,
            "valid_per_s": lat.size / (high - low),
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
            "stream_frames_per_s": sum(low <= t < high for t in tally.frames) / (high - low),
            "rss_median_mb": float(np.median(rss)) if rss else float("nan"),
        })  # fmt: skip
    return rows


def verdict(rows: list[dict], tally: Tally, left_open: int, tracebacks: int) -> dict[str, tuple[bool, str]]:
    growth = rows[-1]["rss_median_mb"] / rows[0]["rss_median_mb"] - 1
    p99_ratio = rows[-1]["p99_ms"] / rows[0]["p99_ms"]
    failed = sum(n for kind, n in tally.errors.items() if kind.startswith("valid"))
    return {
        "memory": (growth < MEMORY_GROWTH_LIMIT, f"RSS median Q4 vs Q1 {growth:+.1%} (limit {MEMORY_GROWTH_LIMIT:.0%})"),
        "valid": (failed == 0, f"{failed} valid requests failed of {tally.counts['valid request']}"),
        "p99": (p99_ratio <= P99_GROWTH_LIMIT, f"p99 Q4 / Q1 = {p99_ratio:.2f} (limit {P99_GROWTH_LIMIT})"),
        "streams": (left_open == 0, f"{left_open} streams still open after the clients left"),
        "log": (tracebacks == 0, f"{tracebacks} tracebacks in the server log"),
    }


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", text)
    wanted = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16"}
    flags = sorted(set(text.split()) & wanted)
    return f"{model.group(1) if model else 'unknown CPU'}, {os.cpu_count()} cores; flags: {' '.join(flags) or 'none of ' + '/'.join(sorted(wanted))}"


def report(result: dict) -> None:
    print(f"\nCPU: {result['cpu']}; load average {result['load_start']:.1f} at the start, {result['load_end']:.1f} at the end")
    print(f"{result['minutes']:g} min, {result['clients']} valid clients; server RSS start {result['rss_start_mb']:.1f} MB, "
          f"middle {result['rss_middle_mb']:.1f} MB, end {result['rss_end_mb']:.1f} MB")  # fmt: skip
    print(f"{'quarter':>7} | {'valid/s':>7} | {'p50 ms':>7} | {'p99 ms':>7} | {'stream frames/s':>15} | {'RSS MB (median)':>15}")
    for row in result["quarters"]:
        print(f"{row['quarter']:>7} | {row['valid_per_s']:>7.2f} | {row['p50_ms']:>7.1f} | {row['p99_ms']:>7.1f} | "
              f"{row['stream_frames_per_s']:>15.2f} | {row['rss_median_mb']:>15.1f}")  # fmt: skip
    print("\nclients (count, errors):")
    for kind, n in sorted(result["counts"].items()):
        errors = {k.split(": ", 1)[1]: v for k, v in result["errors"].items() if k.split(": ", 1)[0] == kind}
        print(f"  {kind:<32} {n:>7}  errors: {sum(errors.values())} {errors if errors else ''}")
    print(f"server log: {result['server_log']}")
    print("\nverdict:")
    for name, (ok, text) in result["verdict"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<8} {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the soak runs (after the warm-up)")
    parser.add_argument("--warmup-s", type=float, default=60.0, help="every kind of client, before the start")
    parser.add_argument("--clients", type=int, default=2, help="threads posting valid requests back to back")
    parser.add_argument("--encoder", type=Path, help="encoder folder (default: a tiny random SigLIP)")
    parser.add_argument("--heads", type=Path, help="heads folder (default: tiny random heads)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/emonet-face-bench-soak"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    print(f"CPU: {cpu_flags()}", flush=True)
    encoder, heads = args.encoder, args.heads
    if encoder is None or heads is None:
        encoder, heads = build_small_model(args.workdir / "tiny", hidden=64, layers=2, image_size=32)
    load_start = os.getloadavg()[0]
    args.workdir.mkdir(parents=True, exist_ok=True)
    log_path = args.workdir / "server.log"
    log_path.unlink(missing_ok=True)
    with Server(encoder, heads, faces="auto", log=log_path) as server:
        print(f"warm-up: {args.warmup_s:g} s", flush=True)
        run(server, args.clients, args.warmup_s)
        open_streams(server.url)
        seconds = args.minutes * 60
        print(f"soak: {args.minutes:g} min", flush=True)
        tally, memory = run(server, args.clients, seconds)
        left_open = open_streams(server.url)
    log = log_path.read_text(errors="replace")
    tracebacks = log.count("Traceback")
    closed = tally.stalls_closed_after
    server_saw = {"stalled readers closed on the send timeout": log.count("left its replies unread"),
                  "uploads cut short": log.count("disconnected before its request was read"),
                  "stalled readers closed by the server": len(closed),
                  "closed after s (median, max)": [round(float(np.median(closed)), 1), round(max(closed), 1)] if closed else None}  # fmt: skip
    rows = quarters(tally, memory, seconds)
    middle = min(memory, key=lambda sample: abs(sample[0] - seconds / 2))
    result = {
        "cpu": cpu_flags(), "minutes": args.minutes, "clients": args.clients, "load_start": load_start,
        "load_end": os.getloadavg()[0], "rss_start_mb": memory[0][1], "rss_middle_mb": middle[1],
        "rss_end_mb": memory[-1][1], "quarters": rows, "counts": dict(tally.counts), "errors": dict(tally.errors),
        "streams_left_open": left_open, "tracebacks": tracebacks, "server_log": server_saw,
        "verdict": verdict(rows, tally, left_open, tracebacks),
    }  # fmt: skip
    report(result)
    print(f"server log: {log_path}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.exit(0 if all(ok for ok, _ in result["verdict"].values()) else 1)


if __name__ == "__main__":
    main()
