"""Clients that vanish or stall, injected for real with raw sockets against a served app: live streams
whose TCP connection drops without a close frame, a stream that never reads its replies, an upload
cut off half-way. The server must give back every slot, its temporary files and its memory, and keep
answering everyone else."""

from __future__ import annotations

import io
import itertools
import json
import logging
import socket
import time
from collections.abc import Callable

import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect

from raw_websocket import vanish, ws_binary_frame, ws_handshake
from serve_helpers import make_config, serving

BOUND_S = 30.0
"""How long the server may take to notice a gone client (polled: a bound, not a timing)."""


def jpeg(seed: int, side: int = 64) -> bytes:
    image = Image.effect_noise((side, side), 40 + seed).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def crowd(astronaut: Image.Image) -> bytes:
    """Nine faces in one picture: each reply carries nine rows (tens of KB), so a client that reads
    none fills its connection's buffers after a few frames."""
    head = astronaut.crop((130, 20, 330, 220))
    grid = Image.new("RGB", (600, 600))
    for i in range(9):
        grid.paste(head, (200 * (i % 3), 200 * (i // 3)))
    buffer = io.BytesIO()
    grid.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def poll(check: Callable[[], bool], what: str | Callable[[], str]) -> None:
    """Wait for ``check``; fail naming ``what`` (a callable: described when the wait fails, not before)."""
    deadline = time.monotonic() + BOUND_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what() if callable(what) else what}: not within {BOUND_S:g} s")
        time.sleep(0.1)


def load(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/v1/info", timeout=BOUND_S).json()["load"]


def assert_still_serving(url: str, image: bytes) -> None:
    """A fresh stream is scored and ``/v1/predict`` answers, with rows."""
    port = int(url.rsplit(":", 1)[1])
    with connect(f"ws://127.0.0.1:{port}/v1/stream?faces=none", open_timeout=BOUND_S) as ws:
        ws.send(image)
        reply = json.loads(ws.recv(timeout=BOUND_S))
    assert reply["rows"] and "error" not in reply, reply
    answer = httpx.post(f"{url}/v1/predict?faces=none", files={"file": ("a.jpg", image)}, timeout=BOUND_S)
    assert answer.status_code == 200 and answer.json()["rows"]


@pytest.fixture(scope="module")
def small_server(tiny_encoder_dir, tiny_heads_dir):
    """Two stream slots (a slot never given back shows at once), a 1 s send timeout, and connections
    whose kernel send buffer is small, so a client that never reads stalls the server's sends quickly."""
    config = make_config(tiny_encoder_dir, tiny_heads_dir, faces="none", max_streams=2, send_timeout_s=1.0)
    with serving(config, send_buffer=4096) as (url, app):
        yield url, app


def test_streams_that_vanish_without_a_close_frame_give_back_their_slots(small_server):
    url, _ = small_server
    port = int(url.rsplit(":", 1)[1])
    for i in range(6):  # three times the slots: a slot kept by a gone client would refuse the next ones
        sock = ws_handshake(port, query="faces=none", timeout=BOUND_S)
        sock.sendall(ws_binary_frame(jpeg(i)))
        # a reset (the client's machine went away) or a plain FIN (the process died)
        vanish(sock, reset=bool(i % 2))
        poll(lambda: load(url)["streams"] == 0, f"vanished stream {i} still holds its slot")
    assert_still_serving(url, jpeg(99))


def test_a_client_that_never_reads_is_closed_and_slows_no_one(small_server, caplog, astronaut):
    url, _ = small_server
    port = int(url.rsplit(":", 1)[1])
    caplog.set_level(logging.INFO, logger="emonet_face.serve")
    sock = ws_handshake(port, rcvbuf=2048, query="faces=detect", timeout=BOUND_S)
    frame = ws_binary_frame(crowd(astronaut))
    closed = False
    deadline = time.monotonic() + BOUND_S
    try:
        for sent in itertools.count():  # frames keep coming, replies are never read
            sock.sendall(frame)
            if (sent % 5 == 4 and load(url)["streams"] == 0) or time.monotonic() > deadline:
                closed = load(url)["streams"] == 0
                break
            time.sleep(0.1)
    except OSError:  # the server dropped the connection under our feet
        closed = True
    try:
        assert closed, "a stream that reads none of its replies was never closed"
        poll(lambda: load(url)["streams"] == 0, "the stalled stream's slot")
        assert any("left its replies unread" in r.getMessage() for r in caplog.records)
        assert_still_serving(url, jpeg(98))
    finally:
        sock.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_other_clients_are_answered_while_one_stalls(small_server):
    """While a stalled reader holds one of the two slots, a stream and /v1/predict are answered."""
    url, _ = small_server
    port = int(url.rsplit(":", 1)[1])
    sock = ws_handshake(port, rcvbuf=2048, query="faces=none", timeout=BOUND_S)
    try:
        for _ in range(40):  # far more replies than its buffers hold
            sock.sendall(ws_binary_frame(jpeg(2)))
        assert_still_serving(url, jpeg(97))
    finally:
        sock.close()
    poll(lambda: load(url)["streams"] == 0, "the stalled stream's slot after it left")


def test_an_upload_cut_off_half_way_leaves_no_temporary_file(small_server, tmp_path, monkeypatch, caplog):
    import tempfile

    url, _ = small_server
    port = int(url.rsplit(":", 1)[1])
    temp = tmp_path / "server-tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # the server's upload folders and spooled parts go here
    caplog.set_level(logging.INFO, logger="emonet_face.serve")
    head = b'--cut\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    body_size = len(head) + 4_000_000  # past the 1 MB a spooled part keeps in memory: part of it is on disk
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND_S) as sock:
        sock.sendall(
            f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=cut\r\n"
            f"Content-Length: {body_size}\r\n\r\n".encode() + head + b"\xff" * 2_000_000
        )
        poll(lambda: any(temp.iterdir()), "the server's upload folder")  # the request is being read
    # described when the wait fails (the server deletes its upload folder meanwhile); the folder's own entries
    poll(lambda: not any(temp.iterdir()), lambda: f"temporary files left behind: {sorted(p.name for p in temp.iterdir())}")
    poll(lambda: load(url)["requests"] == 0, "the cut-off request still counted in progress")
    assert any("disconnected before its request was read" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    monkeypatch.undo()
    assert_still_serving(url, jpeg(96))


def test_a_connection_stuck_closing_is_dropped(monkeypatch):
    """uvicorn closes a stream whose keep-alive pings go unanswered gracefully; with bytes still buffered
    for a client that reads nothing, that close never ends. The stream's watcher aborts it."""
    import asyncio

    from emonet_face.serve import stream

    class Connection:  # the two transport methods the watcher uses, on a connection stuck closing
        aborted = 0

        def is_closing(self) -> bool:
            return True

        def abort(self) -> None:
            self.aborted += 1

    monkeypatch.setattr(stream, "STUCK_CLOSE_S", 0.2)
    connection = Connection()

    async def watch_for(seconds: float) -> None:
        watcher = asyncio.create_task(stream._drop_when_stuck(connection))
        await asyncio.sleep(seconds)
        watcher.cancel()

    asyncio.run(watch_for(1.0))
    assert connection.aborted == 1
