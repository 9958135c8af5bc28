"""The request body limit (``--max-upload-mb``), enforced while the body is read, and the handle a
live stream needs to drop a connection whose client stopped reading (:class:`TransportHandle`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from emonet_face.errors import format_size
from emonet_face.serve.errors import UploadTooLarge

__all__ = ["TRANSPORT_KEY", "BodyGuard", "TransportHandle"]

TRANSPORT_KEY = "emonet_face.transport"
"""Where :class:`TransportHandle` puts a WebSocket connection's asyncio transport in its ASGI scope."""


class BodyGuard:
    """ASGI middleware: counts the request body as it is read and stops past ``limit`` bytes
    (413; nothing beyond the limit is ever held). Before any early answer (413, 401, 503…) it reads
    and drops what the client is still sending (up to ``drain_cap`` bytes), so the client gets the
    answer instead of a connection reset in the middle of its upload."""

    def __init__(self, app: Any, limit: int, drain_cap: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self.drain_cap = drain_cap if drain_cap is not None else 4 * limit + (1 << 20)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _CountedBody(receive, send, self.limit, self.drain_cap)
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await body.drain()
            message = (
                f"request body of {format_size(int(declared))} is over the upload limit of {format_size(self.limit)}; "
                "send smaller or fewer files (the server's --max-upload-mb)"
            )
            await _send_json(send, 413, {"error": message})
            return
        await self.app(scope, body.receive, body.send)


class _CountedBody:
    """One request's ``receive`` and ``send``, wrapped: the body is counted as the app reads it, and
    what the client still sends is drained before the answer starts."""

    def __init__(self, receive: Callable, send: Callable, limit: int, drain_cap: int) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.drain_cap = drain_cap
        self.read = 0
        self.done = False

    async def receive(self) -> dict:
        message = await self._receive()
        if message["type"] == "http.request":
            self.read += len(message.get("body", b""))
            self.done = not message.get("more_body", False)
            if self.read > self.limit:
                raise UploadTooLarge(
                    f"request body over the upload limit of {format_size(self.limit)}; send smaller or fewer files "
                    "(the server's --max-upload-mb)"
                )
        elif message["type"] == "http.disconnect":
            self.done = True
        return message

    async def drain(self) -> None:
        while not self.done and self.read <= self.drain_cap:
            message = await self._receive()
            self.read += len(message.get("body", b""))
            self.done = message["type"] != "http.request" or not message.get("more_body", False)

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start" and not self.done:
            await self.drain()
        await self._send(message)


async def _send_json(send: Callable, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class TransportHandle:
    """ASGI middleware: puts the server's asyncio transport of each WebSocket connection into its
    scope (:data:`TRANSPORT_KEY`; absent when the server does not expose one).

    ASGI has no message to drop a connection: a graceful close waits until the bytes buffered for the
    client are read, which a client that stopped reading never does, so its connection and buffers
    would live until the kernel gives up. uvicorn hands the app its protocol's bound ``send``, whose
    object holds the transport; this middleware sits outside Starlette's wrappers and sees it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "websocket":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if hasattr(transport, "abort") and hasattr(transport, "is_closing"):
                scope[TRANSPORT_KEY] = transport
        await self.app(scope, receive, send)
