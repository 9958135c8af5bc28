"""Which serving stack for ``emonet-face serve``: LitServe's batching vs FastAPI + uvicorn with our
small batcher (:class:`emonet_face.serve.Batcher`), on loopback, with the same simulated model.

Both servers take a JSON body with one base64 JPEG, decode it with Pillow, and run a fake
"encoder" that costs ``--base-ms`` per batch plus ``--item-ms`` per item (``time.sleep``: no CPU,
so the figures measure the stacks' own overhead and batching, not the shared machine's cores).
Batching on both: up to 16 items, 10 ms timeout. 16 concurrent clients, bounded request count.

    python benchmarks/bench_serve_stacks.py
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import load

ROOT = Path(__file__).resolve().parents[1]

COMMON = """
import base64, io, sys, time
from PIL import Image
BASE, ITEM = {base} / 1000, {item} / 1000
def decode(b64):
    image = Image.open(io.BytesIO(base64.b64decode(b64))); image.load()
    return image.size
def fake_encoder(items):
    time.sleep(BASE + ITEM * len(items))
    return [{{"w": w, "h": h}} for w, h in items]
"""

LITSERVE = """
import litserve as ls
class API(ls.LitAPI):
    def setup(self, device): pass
    def decode_request(self, request): return decode(request["images"][0])
    def predict(self, items): return fake_encoder(items)
    def encode_response(self, output): return {{"rows": [output]}}
if __name__ == "__main__":
    ls.LitServer(API(max_batch_size=16, batch_timeout=0.01), accelerator="cpu", workers_per_device=1,
                 api_path="/v1/predict").run(host="127.0.0.1", port={port}, generate_client_file=False,
                 log_level="warning")
"""

OURS = """
import asyncio
import uvicorn
from fastapi import FastAPI, Request
from emonet_face.serve import Batcher
app = FastAPI()
batcher = Batcher(fake_encoder, max_batch_size=16, timeout_s=0.01, max_queue=256).start()
@app.get("/health")
def health(): return {{"status": "ok"}}
@app.post("/v1/predict")
async def predict(request: Request):
    payload = await request.json()
    size = await asyncio.get_running_loop().run_in_executor(None, decode, payload["images"][0])
    (future,) = batcher.submit([size])
    return {{"rows": [await asyncio.wrap_future(future)]}}
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def json_load(url: str, body: bytes, clients: int, requests: int) -> dict:
    def send(session: httpx.Client, i: int) -> httpx.Response:
        return session.post(f"{url}/v1/predict", content=body, headers={"content-type": "application/json"})

    return load(url, send, clients, requests, 120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-ms", type=float, default=20.0)
    parser.add_argument("--item-ms", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=320)
    args = parser.parse_args()
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buffer, "JPEG")
    body = f'{{"images": ["{base64.b64encode(buffer.getvalue()).decode()}"]}}'.encode()
    common = COMMON.format(base=args.base_ms, item=args.item_ms)
    print(f"fake encoder: {args.base_ms} ms per batch + {args.item_ms} ms per item; 16 clients, "
          f"{args.requests} requests (the machine is shared: compare the two lines, not absolute figures)")  # fmt: skip
    print(f"{'stack':<28} | {'req/s':>7} | {'p50 ms':>7} | {'p99 ms':>7} | failed")
    for name, template in (("LitServe 0.2 (batching)", LITSERVE), ("FastAPI + our Batcher", OURS)):
        port = free_port()
        script = Path(tempfile.mkdtemp()) / "server.py"  # a file: LitServe's worker processes re-import it
        script.write_text(textwrap.dedent(common) + textwrap.dedent(template.format(port=port)))
        proc = subprocess.Popen([sys.executable, str(script)], env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.3)
            json_load(url, body, 4, 16)  # warm-up
            r = json_load(url, body, 16, args.requests)
            print(f"{name:<28} | {r['rps']:>7.1f} | {r['p50']:>7.1f} | {r['p99']:>7.1f} | {r['failed']}", flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # LitServe's worker processes too
            proc.wait(30)


if __name__ == "__main__":
    main()
