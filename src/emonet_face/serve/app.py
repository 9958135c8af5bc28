"""The HTTP API (FastAPI) around one loaded :class:`~emonet_face.pipeline.EmoNetFace`.

:func:`create_app` builds the app from its parts, each a module of this package:

* :mod:`~emonet_face.serve.predict`: ``POST /v1/predict`` and ``POST /v1/explain`` (uploads → rows,
  through the shared :class:`~emonet_face.serve.batcher.Batcher`);
* :mod:`~emonet_face.serve.stream`: the live WebSocket ``/v1/stream``, which shares the model, the
  batcher and the decode pool with ``/v1/predict``;
* :mod:`~emonet_face.serve.info`: ``/health``, ``/v1/info`` and the page at ``/``;
* :mod:`~emonet_face.serve.deps`: what the routes share, as dependencies: the loaded
  :class:`~emonet_face.serve.service.Service` (model, batcher, pools, config), the API key check,
  one request's slot;
* :mod:`~emonet_face.serve.guard` and :mod:`~emonet_face.serve.errors`: the limits and the errors.

Limits: the request body is counted while it is read (413 past ``--max-upload-mb``), images over
the decompression-bomb limit are refused from their header (:func:`emonet_face.inputs.load_image`),
requests in progress and queued encoder inputs are bounded (503 + ``Retry-After``). Every error is
``{"error": "..."}``; a traceback goes to the server log only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from emonet_face._version import __version__
from emonet_face.errors import error_text
from emonet_face.pipeline import EmoNetFace
from emonet_face.serve.config import BACKENDS, FACE_MODES, ServeConfig, load_model
from emonet_face.serve.errors import install_error_handlers
from emonet_face.serve.guard import BodyGuard, TransportHandle
from emonet_face.serve.info import STATIC
from emonet_face.serve.info import router as info_router
from emonet_face.serve.predict import router as predict_router
from emonet_face.serve.service import Service
from emonet_face.serve.stream import STREAM_PATH
from emonet_face.serve.stream import router as stream_router

__all__ = ["BACKENDS", "FACE_MODES", "ServeConfig", "Service", "create_app", "load_model"]

log = logging.getLogger("emonet_face.serve")

DESCRIPTION = (
    "EmoNet-Face emotion scores (40 emotions + 4 dimensions) for face images. "
    f"POST images to /v1/predict; stream camera frames to the WebSocket {STREAM_PATH} (see the module "
    "emonet_face.serve.stream); the page at / does both in a browser."
)


def create_app(config: ServeConfig, loader: Callable[[ServeConfig], EmoNetFace] = load_model) -> FastAPI:
    """The FastAPI app. The model loads in a background thread at start-up (``/health`` answers
    503 until it is ready); ``app.state.service.load_error`` holds the message if loading fails,
    and ``app.state.on_load_error`` (if set) is called with it (the CLI stops the server)."""
    app = _make_fastapi(title="emonet-face", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.service = Service(config, loader)
    app.state.config = config
    app.add_middleware(BodyGuard, limit=config.max_upload_bytes)
    app.add_middleware(TransportHandle)
    install_error_handlers(app)
    app.include_router(info_router)
    app.include_router(predict_router)
    app.include_router(stream_router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model in the background while the server starts; close the service when it stops."""
    loop = asyncio.get_running_loop()
    threading.Thread(target=_load, args=(app, loop), name="emonet-face-load", daemon=True).start()
    yield
    await loop.run_in_executor(None, app.state.service.close)


def _load(app: FastAPI, loop: asyncio.AbstractEventLoop) -> None:
    """Load the app's model (the loading thread); a failure is kept in ``load_error`` and handed to
    ``app.state.on_load_error`` on the event loop."""
    service: Service = app.state.service
    try:
        service.load()
        log.info("model loaded; ready")
    except Exception as exc:
        service.load_error = error_text({"path": service.config.model}, exc)
        callback = getattr(app.state, "on_load_error", None)
        if callback is not None:
            loop.call_soon_threadsafe(callback, service.load_error)


def _make_fastapi(**kwargs: Any) -> FastAPI:
    """FastAPI with /docs served from the package's own Swagger UI copy (``fastapi-offline``): no CDN."""
    from fastapi_offline import FastAPIOffline

    return FastAPIOffline(**kwargs)
