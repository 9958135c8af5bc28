"""Running the server: what ``emonet-face serve`` hands its options to (:func:`run_server`).

SIGTERM / Ctrl-C stop it gracefully: no new connections, requests in flight finish (up to 60 s),
live streams are closed with code 1012; a model that does not load stops it at once.
"""

from __future__ import annotations

import logging
import signal

import uvicorn

from emonet_face.faces import get_detector
from emonet_face.serve.app import create_app
from emonet_face.serve.config import ServeConfig

__all__ = ["ServeConfig", "run_server"]

GRACEFUL_SHUTDOWN_S = 60
"""How long requests in flight may take to finish after SIGTERM / Ctrl-C."""


def run_server(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> str | None:
    """Check ``config``, then serve on ``host:port`` until SIGTERM / Ctrl-C. Returns ``None`` after a
    clean stop, or the one-line message of a model that did not load (the server then stops at once).
    Bad options raise :class:`~emonet_face.errors.InputError` before anything starts."""
    config.check()
    if config.faces != "none":  # an unknown detector or missing weights: fail now, not on the first request
        get_detector(config.detector, **config.detector_options)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="info",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            # live frames up to twice the upload limit reach /v1/stream, which answers an error for those
            # over it; bigger ones close the connection (1009). JPEG frames do not compress: no deflate.
            ws_max_size=2 * config.max_upload_bytes,
            ws_per_message_deflate=False,
        )
    )
    stop = StopOnLoadError(server)
    app.state.on_load_error = stop
    _run_until_stopped(server)
    return stop.message


class StopOnLoadError:
    """``app.state.on_load_error``: keeps the message and asks uvicorn to stop."""

    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server
        self.message: str | None = None

    def __call__(self, message: str) -> None:
        if self.message is None:
            self.message = message
        self.server.should_exit = True


def _run_until_stopped(server: uvicorn.Server) -> None:
    """Run uvicorn; SIGTERM / Ctrl-C stop it gracefully (no new connections, in-flight requests
    finish) and the command then exits 0. uvicorn re-raises the signal it caught once it has shut
    down (which would end the process with -15); the handlers installed here take that re-raise."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
