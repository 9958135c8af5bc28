"""A real chat-completions HTTP server on 127.0.0.1 for the VLM tests, plus tiny test images.

Each request is answered by a ``behaviour(seen) -> Reply`` callback. The server identifies which
test image a request carries by decoding the data URL (solid-colour images whose red channel
encodes their index), counts requests, and records the most requests it saw in flight at once.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image

from emonet_face.taxonomy import EMOTIONS, EXTRA_DIMENSIONS

COLOUR_STEP = 10


def make_images(folder: Path, n: int, size: int = 24) -> list[Path]:
    """``n`` solid-colour PNGs whose red channel encodes their index (for the server to recognise)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n):
        path = folder / f"img_{index:03d}.png"
        Image.new("RGB", (size, size), (index * COLOUR_STEP, 90, 160)).save(path)
        paths.append(path)
    return paths


def image_index_of(data_url: str) -> int:
    encoded = data_url.split(",", 1)[1]
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as img:
        red = img.convert("RGB").getpixel((img.width // 2, img.height // 2))[0]
    return round(red / COLOUR_STEP)


def answer(index: int = 0, *, nonzero: int = 3, reason_key: str = "reason", overrides: dict | None = None) -> dict:
    """A valid answer: ``nonzero`` emotions rated 1..7 (depending on ``index``), the rest 0."""
    emotions = {}
    for position, emotion in enumerate(EMOTIONS):
        rating = 1 + (index + position) % 7 if position < nonzero else 0
        emotions[emotion.name] = {"rating": rating, reason_key: f"because {position}"}
    extras = {
        d.name: {"rating": d.low + (index % (d.high - d.low + 1)), reason_key: "looks so"} for d in EXTRA_DIMENSIONS
    }
    result = {"emotions": emotions, "extra_dimensions": extras}
    for name, rating in (overrides or {}).items():
        result["emotions"][name]["rating"] = rating
    return result


@dataclass
class Seen:
    """One request as the server saw it."""

    number: int
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    image: int | None
    previous_for_image: int
    """Requests for the same image before this one."""
    time: float
    """Arrival (``time.monotonic()``)."""


@dataclass
class Reply:
    status: int = 200
    content: str | None = None
    """Assistant text for a 200; ignored when ``raw`` is given."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None


def completion(content: str, usage: tuple[int, int] = (1000, 400)) -> bytes:
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }
    return json.dumps(body).encode()


def ok(index: int, **kwargs: Any) -> Reply:
    return Reply(content=json.dumps(answer(index, **kwargs)))


class FakeVLM:
    """Start with ``with FakeVLM(behaviour) as server:``; ``server.url`` is the API root."""

    def __init__(self, behaviour: Callable[[Seen], Reply]) -> None:
        self.behaviour = behaviour
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._per_image: dict[int | None, int] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def requests_for(self, image: int) -> list[Seen]:
        return [s for s in self.seen if s.image == image]

    def __enter__(self) -> FakeVLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()  # wake any deliberately slow handler
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                image = None
                for message in body.get("messages", []):
                    content = message.get("content")
                    if isinstance(content, list):
                        for part in content:
                            if part.get("type") == "image_url":
                                image = image_index_of(part["image_url"]["url"])
                with fake._lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    previous = fake._per_image.get(image, 0)
                    fake._per_image[image] = previous + 1
                    seen = Seen(len(fake.seen), self.path, dict(self.headers), body, image, previous, time.monotonic())
                    fake.seen.append(seen)
                try:
                    reply = fake.behaviour(seen)
                    if reply.delay:
                        fake._release.wait(reply.delay)
                    payload = reply.raw if reply.raw is not None else completion(reply.content or "")
                    if reply.status != 200 and reply.raw is None:
                        payload = json.dumps({"error": {"message": reply.content or "error"}}).encode()
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

        return Handler


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``condition`` (bounded) so a test never hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
