"""Rude WebSocket clients on raw sockets, for the fault tests and ``benchmarks/bench_soak.py``: no client
library lets a client vanish without a close frame or never read its replies."""

from __future__ import annotations

import base64
import os
import socket
import struct

import numpy as np


def ws_handshake(port: int, *, rcvbuf: int | None = None, query: str = "", timeout: float = 30.0) -> socket.socket:
    """A socket with a completed WebSocket handshake on ``/v1/stream?query`` (``rcvbuf``: a small
    receive buffer, so a client that never reads fills it quickly). A refused or cut handshake raises
    ``ConnectionError``."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    path = f"/v1/stream?{query}" if query else "/v1/stream"
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(1024)
        if not chunk:
            raise ConnectionError("the server closed the connection during the handshake")
        answer += chunk
    status = answer.split(b"\r\n", 1)[0]
    if b" 101 " not in status:
        raise ConnectionError(f"handshake refused: {status.decode()}")
    return sock


def ws_binary_frame(data: bytes) -> bytes:
    """One masked binary WebSocket frame (RFC 6455: clients mask what they send)."""
    mask = os.urandom(4)
    size = len(data)
    if size < 126:
        header = struct.pack("!BB", 0x82, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x82, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x82, 0x80 | 127, size)
    payload = (np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), size)).tobytes()
    return header + mask + payload


def vanish(sock: socket.socket, *, reset: bool) -> None:
    """Close the TCP connection without a WebSocket close frame: a FIN, or with ``reset`` an RST."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
