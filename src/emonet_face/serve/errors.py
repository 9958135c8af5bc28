"""Every error the HTTP API answers is ``{"error": "one line"}``: FastAPI's own (404, 405, 422), ours
(``HTTPException``), an upload past the limit (413) and a crash (500; the traceback goes to the
server log only)."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

__all__ = ["UploadTooLarge", "error_response", "install_error_handlers"]

log = logging.getLogger("emonet_face.serve")

CLIENT_CLOSED = 499
"""The status logged for a request whose client left before it was read (nginx's convention; no one receives it)."""


class UploadTooLarge(Exception):
    """The request body passed ``--max-upload-mb`` while it was being read."""


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) + "; see /docs for the parameters"


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"{request.url.path}: no such endpoint; see /docs"
    elif exc.status_code == 405:
        message = f"{request.method} {request.url.path}: method not allowed; see /docs"
    return error_response(exc.status_code, message, getattr(exc, "headers", None))


async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, _validation_message(exc))


async def too_large(request: Request, exc: UploadTooLarge) -> JSONResponse:
    return error_response(413, str(exc))


async def client_left(request: Request, exc: ClientDisconnect) -> Response:
    """The client closed the connection before its request was read (an upload cut short): nothing
    to answer and nothing wrong with the server, so no traceback; the upload folder is removed by
    :func:`~emonet_face.serve.deps.request_slot` as on every path."""
    log.info("%s %s: the client disconnected before its request was read", request.method, request.url.path)
    return Response(status_code=CLIENT_CLOSED)


async def crashed(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(500, f"internal error ({type(exc).__name__}); the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as ``{"error": "..."}``."""
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]
    app.add_exception_handler(UploadTooLarge, too_large)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, client_left)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, crashed)
