"""The server in tests: the app in a real uvicorn server on 127.0.0.1 (a free port, bound before the
server starts) in a thread (:func:`serving`, :func:`running_server`), or ``emonet-face serve`` in a
fresh process (:func:`serve_process`)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from helpers_cli import emonet_command, subprocess_env


def make_config(encoder_dir, heads_dir, **overrides):
    """A ``ServeConfig`` for the model in ``encoder_dir`` + ``heads_dir`` on the CPU, two workers, then ``overrides``."""
    from emonet_face.serve import ServeConfig

    options = {"encoder": str(encoder_dir), "heads": str(heads_dir), "device": "cpu", "workers": 2}
    return ServeConfig(**{**options, **overrides})


@contextmanager
def serving(config, *, loader=None, wait_ready: bool = True, send_buffer: int | None = None) -> Iterator[tuple]:
    """``create_app(config, loader=loader)`` served until the block ends; yields ``(base URL, app)``."""
    from emonet_face.serve import create_app

    app = create_app(config) if loader is None else create_app(config, loader=loader)
    with running_server(app, wait_ready=wait_ready, send_buffer=send_buffer) as url:
        yield url, app


@contextmanager
def running_server(
    app, *, wait_ready: bool = True, timeout: float = 60.0, send_buffer: int | None = None
) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL. ``send_buffer``: the kernel's send
    buffer of every connection, in bytes (set on the listening socket, which accepted ones inherit),
    so that a client that never reads fills it after a few replies."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        if wait_ready:
            wait_healthy(url, timeout=timeout)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy in {timeout} s")


@contextmanager
def loading_server(config, net) -> Iterator[tuple[str, threading.Event]]:
    """The app served while its model is still loading, until the yielded event is set (the model is
    then ``net``); yields ``(base URL, loaded)``. Set at the end in any case, so the server can stop."""
    loaded = threading.Event()

    def slow_loader(config):
        loaded.wait(30)
        return net

    try:
        with serving(config, loader=slow_loader, wait_ready=False) as (url, _):
            yield url, loaded
    finally:
        loaded.set()


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (for a server in another process)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_process(*args: object, timeout: float = 120, **env: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``emonet-face serve ARGS --port P`` (a free port) in a fresh process (``subprocess_env(**env)``),
    healthy; yields ``(process, base URL)``. Its stdout and stderr, merged, are text in
    ``process.stdout``; a process still running when the block ends is killed."""
    port = free_port()
    command = emonet_command("serve", *args, "--port", port)
    proc = subprocess.Popen(command, env=subprocess_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout=timeout)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
