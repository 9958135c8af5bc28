"""The live WebSocket ``/v1/stream``: frames scored as they arrive, the newest frame first.

Protocol (one connection = one stream):

* The client sends **binary messages, one encoded image each** (JPEG or PNG). The server numbers
  them in the order received, from 0.
* For each frame it scores, the server sends one text message ``{"frame": N, "rows": [...]}``.
  The rows are ``POST /v1/predict``'s row objects for that image, laid out as a video's rows are
  (``path`` ``"stream"``, ``frame``, ``time`` = seconds since the connection opened, the face
  columns, ``track``, the scores): ``track`` comes from a face tracker that lives as long as the
  connection.
* **The newest frame wins**: while a frame is scored, each new one replaces the one waiting; a
  replaced frame gets no reply. Replies come in increasing frame order, and the last frame sent
  is answered about one scoring time after it arrived, however fast frames come.
* A frame that cannot be used (not an image, over ``--max-upload-mb``, over the pixel limit, a
  text message) gets ``{"frame": N, "rows": [], "error": "one line"}`` and the stream goes on.
* Query parameters: ``faces`` (detect, none, auto; default the server's ``--faces``) and ``fps``
  (score at most this many frames per second; default as many as the server can).
* With ``--api-key-env`` the key is required: ``Authorization: Bearer KEY`` from programs, or —
  browsers cannot set WebSocket headers — the subprotocol ``bearer.<KEY in base64url>`` offered
  next to ``emonet-face`` (the key then stays out of URLs and access logs).
* Refusals close the connection with a code and a one-line reason: 1008 (wrong or missing key, bad
  parameter), 1013 (try again later: too many streams, ``--max-streams``, or the model is still
  loading). On SIGTERM the server closes every stream with 1012 (service restart).
* **A client must read its replies.** Each connection has one reply in flight (the next frame is
  scored only once the last reply is handed over), so a client that stops reading costs no
  encoder time and holds at most one frame and one reply. A reply the connection cannot take for
  ``send_timeout_s`` (:class:`~emonet_face.serve.config.ServeConfig`; the socket's buffers are
  full) closes it with 1008 and a one-line reason; if even the close frame cannot be written, the
  connection is dropped. A client that vanishes without a close frame is noticed by the TCP
  connection closing, or by the server's keep-alive pings (unanswered for 20 s); either way its
  tasks are cancelled and its slot and memory are released.

Frames of every stream go through the same :class:`~emonet_face.serve.batcher.Batcher` as
``/v1/predict``: faces of several streams that are ready together are encoded in one batch.
Decoding, face detection and the rows are built in the server's decode pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import math
import time
from typing import Any

from fastapi import APIRouter, WebSocket

from emonet_face.errors import format_size
from emonet_face.faces import FaceMode
from emonet_face.live import Frame, FrameScorer
from emonet_face.media import Item
from emonet_face.serve.batcher import Batcher, QueueFull
from emonet_face.serve.deps import ServiceDep
from emonet_face.serve.guard import TRANSPORT_KEY
from emonet_face.serve.records import records
from emonet_face.serve.service import Service

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_NOT_READING",
    "CLOSE_TRY_LATER",
    "KEY_PREFIX",
    "STREAM_PATH",
    "SUBPROTOCOL",
    "key_subprotocol",
    "router",
]

log = logging.getLogger("emonet_face.serve")

STREAM_PATH = "/v1/stream"
SUBPROTOCOL = "emonet-face"
"""The subprotocol the server selects when a client offers it (browsers must get one back when they offer any)."""
KEY_PREFIX = "bearer."
"""A subprotocol ``bearer.<base64url(key)>`` carries the API key for clients that cannot set headers."""
CLOSE_BAD_REQUEST = 1008
CLOSE_TRY_LATER = 1013
CLOSE_NOT_READING = 1008
"""A client that leaves its replies unread for ``send_timeout_s`` is closed with this code (policy violation)."""
CLOSE_WRITE_S = 1.0
"""How long the close frame of a stalled client may take to be written before the connection is dropped."""
SLOW_SEND_S = 0.05
"""A reply not taken within this is a slow reader's: the stream stops being waited for by forming batches."""
STUCK_CLOSE_S = 5.0
"""A connection closing for this long without ending (its buffered bytes unread) is dropped."""
"""A reply not taken within this is a slow reader's: the stream stops being waited for by forming batches."""
MAX_REASON_BYTES = 123  # RFC 6455: a close reason fits in a control frame


def key_subprotocol(key: str) -> str:
    """The subprotocol that carries ``key`` (base64url without padding: every character is allowed in a
    ``Sec-WebSocket-Protocol`` token)."""
    return KEY_PREFIX + base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _offered_key(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    for protocol in websocket.scope.get("subprotocols") or ():
        if protocol.startswith(KEY_PREFIX):
            text = protocol[len(KEY_PREFIX) :]
            try:
                return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            except (binascii.Error, ValueError):
                return ""
    return None


def _reason(text: str) -> str:
    data = text.encode()[:MAX_REASON_BYTES]
    return data.decode(errors="ignore")


def _parameters(websocket: WebSocket, default_faces: str) -> tuple[str, float | None]:
    """``faces`` and ``fps`` from the query string; ``ValueError`` (one line) when one is wrong."""
    query = websocket.query_params
    faces = query.get("faces") or default_faces
    if faces not in {m.value for m in FaceMode}:
        raise ValueError(f"faces={faces}: use one of detect, none, auto")
    fps: float | None = None
    if query.get("fps"):
        try:
            fps = float(query["fps"])
        except ValueError:
            raise ValueError(f"fps={query['fps']}: not a number") from None
        if not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps={query['fps']}: must be a positive number of frames per second")
    unknown = sorted(set(query) - {"faces", "fps"})
    if unknown:
        raise ValueError(f"unknown query parameter {unknown[0]!r}; use faces and fps")
    return faces, fps


class _Stream:
    """One connection: a receiver that numbers frames and keeps only the newest waiting, and a scorer
    that takes it, scores it through the shared batcher and sends its reply."""

    def __init__(self, websocket: WebSocket, service: Service, scorer: FrameScorer, fps: float | None) -> None:
        assert service.batcher is not None, "a stream is admitted only once the model is loaded"
        self.websocket = websocket
        self.service = service
        self.batcher: Batcher = service.batcher
        self.scorer = scorer
        self.limit = service.config.max_upload_bytes
        self.min_interval = 1.0 / fps if fps else 0.0
        self.send_timeout = service.config.send_timeout_s
        self.started = time.monotonic()
        self.next_index = 0
        self.waiting: Frame | None = None
        self.wake = asyncio.Event()

    async def receive(self) -> None:
        """Read messages until the client (or the server's shutdown) closes the connection."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            index, now = self.next_index, time.monotonic()
            self.next_index += 1
            data = message.get("bytes")
            frame = Frame(index, now - self.started, data, arrived=now)
            if data is None:
                frame.error = f"frame {index}: a text message; send each frame as a binary message (one JPEG or PNG)"
            elif len(data) > self.limit:
                frame.image = None  # not kept: only its size is reported
                frame.error = (
                    f"frame {index}: {format_size(len(data))} is over the upload limit of {format_size(self.limit)}; send smaller "
                    "frames (the server's --max-upload-mb)"
                )
            self.waiting = frame  # newest wins: a frame still waiting here is skipped
            self.wake.set()

    async def score_forever(self) -> None:
        last_start = -math.inf
        while True:
            await self.wake.wait()
            self.wake.clear()
            delay = last_start + self.min_interval - time.monotonic()
            if delay > 0:  # ?fps=: wait for the next slot; frames arriving meanwhile replace each other
                await asyncio.sleep(delay)
            frame, self.waiting = self.waiting, None
            if frame is None:
                continue
            last_start = time.monotonic()
            reply = await self.score(frame)
            if not await self.send(json.dumps(reply, allow_nan=False)):
                return
            if self.waiting is None or self.min_interval:  # nothing to submit right away: no batch waits for us
                self.batcher.withdraw(self)

    async def send(self, text: str) -> bool:
        """Hand one reply to the connection; ``False`` (and the connection closed) when the client has
        not made room for it within ``send_timeout_s``: it stopped reading. A reply that is not taken
        at once withdraws the stream from the batcher, so no batch waits for a slow reader."""
        sending = asyncio.ensure_future(self.websocket.send_text(text))
        try:
            done, _ = await asyncio.wait({sending}, timeout=SLOW_SEND_S)
            if not done:
                self.batcher.withdraw(self)
                done, _ = await asyncio.wait({sending}, timeout=self.send_timeout - SLOW_SEND_S)
            if not done:
                log.info("%s: a client left its replies unread for %g s; closed", STREAM_PATH, self.send_timeout)
                await _close_stalled(self.websocket, self.send_timeout)
                return False
            sending.result()  # a client gone meanwhile: its error ends the stream
            return True
        finally:
            sending.cancel()  # a no-op once sent; else nothing is left waiting on a dead connection

    async def score(self, frame: Frame) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        pool = self.service.pool
        submitted = False
        try:
            items: list[Item] = await loop.run_in_executor(pool, self._prepare, frame)
            if items and all(item.error for item in items):
                return {"frame": frame.index, "rows": [], "error": items[0].error}
            ready = [item for item in items if item.inputs is not None]
            results: list[Any] = []
            if ready:  # owner: this stream comes back with its next frame, a batch may wait for it
                futures = self.batcher.submit(ready, owner=self)
                submitted = True
                results = list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
            rows = await loop.run_in_executor(pool, self._rows, items, results)
            return {"frame": frame.index, "rows": rows}
        except QueueFull as exc:
            return {"frame": frame.index, "rows": [], "error": f"server busy: {exc}; this frame is skipped"}
        except Exception as exc:
            log.exception("%s: frame %d failed", STREAM_PATH, frame.index)
            return {
                "frame": frame.index,
                "rows": [],
                "error": f"internal error ({type(exc).__name__}); the server log has the details",
            }
        finally:
            if not submitted:  # no face, a bad frame, busy: no batch should wait for this stream
                self.batcher.withdraw(self)

    # in the decode pool ---------------------------------------------------------------------------
    def _prepare(self, frame: Frame) -> list[Item]:
        detector = self.service.detector() if self.scorer.faces is not FaceMode.none else None
        return self.scorer.prepare(frame, detector)

    def _rows(self, items: list[Item], results: list[Any]) -> list[dict[str, Any]]:
        return records(self.scorer.table(items, results))


router = APIRouter()


@router.websocket(STREAM_PATH)
async def stream(websocket: WebSocket, service: ServiceDep) -> None:
    """One live stream: accept, refuse (a close code and a one-line reason) or score until it ends."""
    offered = websocket.scope.get("subprotocols") or []
    # a browser that offered subprotocols fails the handshake unless one is selected
    chosen = SUBPROTOCOL if SUBPROTOCOL in offered else (offered[0] if offered else None)
    await websocket.accept(subprotocol=chosen)
    try:
        faces, fps = _admit(websocket, service)
    except _Refused as refused:
        await websocket.close(refused.code, _reason(refused.reason))
        return
    assert service.net is not None
    scorer = FrameScorer(service.net, faces=service.config.face_options(faces))
    await _serve(_Stream(websocket, service, scorer, fps))


class _Refused(Exception):
    """The connection is refused: closed with ``code`` and a one-line ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _admit(websocket: WebSocket, service: Service) -> tuple[str, float | None]:
    """The stream's ``faces`` and ``fps``, or :class:`_Refused` for, in this order, a missing or wrong
    key, the model still loading, ``--max-streams`` reached, or a bad query parameter."""
    config = service.config
    if config.api_key is not None:
        key = _offered_key(websocket)
        if key is None or not hmac.compare_digest(key.encode(), config.api_key.encode()):
            raise _Refused(CLOSE_BAD_REQUEST, "missing or wrong API key; send 'Authorization: Bearer KEY' or, from a "
                           "browser, the subprotocol bearer.<base64url KEY>")  # fmt: skip
    if service.net is None:
        raise _Refused(CLOSE_TRY_LATER, service.load_error or "the model is still loading; retry in a moment")
    if service.streams >= config.max_streams:
        raise _Refused(CLOSE_TRY_LATER, f"too many live streams ({service.streams}, the server's --max-streams); "
                       "retry later")  # fmt: skip
    try:
        return _parameters(websocket, config.faces)
    except ValueError as exc:
        raise _Refused(CLOSE_BAD_REQUEST, str(exc)) from None


async def _serve(session: _Stream) -> None:
    """Receive and score until the client leaves or either side fails; the stream's slot is given back."""
    service = session.service
    service.streams += 1
    receiver = asyncio.create_task(session.receive())
    scoring = asyncio.create_task(session.score_forever())
    tasks = [receiver, scoring]
    transport = _transport(session.websocket)
    if transport is not None:
        tasks.append(asyncio.create_task(_drop_when_stuck(transport)))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        service.streams -= 1
        if service.batcher is not None:
            service.batcher.withdraw(session)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if scoring.done() and not scoring.cancelled() and scoring.exception() is not None:
            error = scoring.exception()
            if not _is_disconnect(error):
                log.error("%s: the stream ended on %s: %s", STREAM_PATH, type(error).__name__, error)


async def _close_stalled(websocket: WebSocket, waited_s: float) -> None:
    """Close a client that stopped reading (1008, one line); drop the connection if even the close
    frame cannot be written within :data:`CLOSE_WRITE_S` (its socket's buffers are full)."""
    reason = _reason(f"replies left unread for {waited_s:g} s; read every reply (or ask fewer with ?fps=)")
    try:
        await asyncio.wait_for(websocket.close(CLOSE_NOT_READING, reason), CLOSE_WRITE_S)
    except Exception:  # timed out or already gone: nothing more can reach this client
        _drop_connection(websocket)


def _drop_connection(websocket: WebSocket) -> None:
    """Abort the TCP connection under ``websocket`` at once, without flushing what is buffered for it."""
    transport = _transport(websocket)
    if transport is not None:
        transport.abort()


def _transport(websocket: WebSocket) -> Any:
    """The connection's asyncio transport (:class:`~emonet_face.serve.guard.TransportHandle`), or ``None``
    under a server that does not expose it (graceful closes only, then)."""
    return websocket.scope.get(TRANSPORT_KEY)


async def _drop_when_stuck(transport: Any) -> None:
    """Abort a connection that is closing but cannot finish (runs until cancelled with its stream).

    uvicorn closes a connection whose keep-alive pings go unanswered gracefully; when bytes are still
    buffered for a client that reads nothing, the close never completes, the stream never hears of
    it and would hold its slot for good. Closing for :data:`STUCK_CLOSE_S` is stuck: aborted, the
    stream then ends as for any lost connection."""
    closing_since: float | None = None
    while True:
        await asyncio.sleep(STUCK_CLOSE_S / 2)
        if not transport.is_closing():
            closing_since = None
        elif closing_since is None:
            closing_since = time.monotonic()
        elif time.monotonic() - closing_since >= STUCK_CLOSE_S:
            log.info("%s: a connection closing for %g s without ending; dropped", STREAM_PATH, STUCK_CLOSE_S)
            transport.abort()
            closing_since = math.inf  # aborted once: wait to be cancelled


def _is_disconnect(error: BaseException | None) -> bool:
    """Sending to a client that has gone away (closed tab, network cut, server shutting down)."""
    names = {"WebSocketDisconnect", "ClientDisconnected", "ConnectionClosed", "ConnectionClosedError",
             "ConnectionClosedOK"}  # fmt: skip
    return type(error).__name__ in names or isinstance(error, (RuntimeError, OSError))
