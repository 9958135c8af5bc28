"""What the routes share, as FastAPI dependencies and helpers: the app's :class:`Service`
(:func:`get_service`, ``ServiceDep``), the API key check (:func:`authorised`), the loaded model
(:func:`ready`: 503 while loading) and one request's slot and upload folder (:func:`request_slot`)."""

from __future__ import annotations

import asyncio
import hmac
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from emonet_face.pipeline import EmoNetFace
from emonet_face.serve.service import Service

__all__ = ["RETRY_AFTER_S", "ServiceDep", "authorised", "busy", "get_service", "ready", "request_slot"]

RETRY_AFTER_S = 1

bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key> (when --api-key-env is set)")


def get_service(connection: HTTPConnection) -> Service:
    """The app's service (model, batcher, pools, config), for HTTP routes and WebSockets alike."""
    return connection.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]
"""A route parameter that receives the app's :class:`Service`."""


def authorised(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """401 unless the request carries the key (``Authorization: Bearer KEY``), when the server has one."""
    key = service.config.api_key
    if key is None:
        return
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), key.encode()):
        raise HTTPException(
            401,
            "missing or wrong API key; send the header 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def ready(service: Service) -> EmoNetFace:
    """The loaded model; 503 + ``Retry-After`` while it loads (or the message if loading failed).
    Called in the routes, after FastAPI has checked their parameters (a bad parameter is 422 even
    while the model loads)."""
    if service.net is None:
        message = service.load_error or "the model is still loading; retry in a moment"
        raise HTTPException(503, message, headers={"Retry-After": str(RETRY_AFTER_S)})
    return service.net


def busy(message: str) -> HTTPException:
    """503 + ``Retry-After``: the server is busy."""
    return HTTPException(503, f"{message}; retry after {RETRY_AFTER_S} s", headers={"Retry-After": str(RETRY_AFTER_S)})


@asynccontextmanager
async def request_slot(service: Service) -> AsyncIterator[Path]:
    """One request in progress (503 + ``Retry-After`` past ``--max-queue``) and its upload folder,
    removed off the event loop when the request ends."""
    if service.in_progress >= service.config.max_queue:
        raise busy(f"server busy ({service.in_progress} requests in progress)")
    service.in_progress += 1
    folder = Path(tempfile.mkdtemp(prefix="emonet-face-serve-"))
    try:
        yield folder
    finally:
        service.in_progress -= 1
        asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, folder, True)
