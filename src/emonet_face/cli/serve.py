"""`emonet-face serve`: the HTTP API and its page (see :mod:`emonet_face.serve`).

Exit codes: 0 after a clean stop (SIGTERM / Ctrl-C: in-flight requests finish first, live streams
are closed with code 1012), 2 for a bad option or a model that does not load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import fail, user_errors
from emonet_face.cli.options import (
    AlignOpt,
    BackendOpt,
    CacheOpt,
    DetectorOpt,
    DeviceOpt,
    DtypeOpt,
    EncoderOpt,
    HeadsOpt,
    MarginOpt,
    MinFaceScoreOpt,
    ModelOpt,
    RevisionOpt,
)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    model: ModelOpt = "large",
    encoder: EncoderOpt = None,
    heads: HeadsOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
    backend: BackendOpt = "auto",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    faces: Annotated[
        str, typer.Option("--faces", help="Default face mode (detect, none, auto); a request may pick its own.")
    ] = "auto",
    detector: DetectorOpt = None,
    margin: MarginOpt = 0.4,
    min_face_score: MinFaceScoreOpt = None,
    align: AlignOpt = False,
    max_batch_size: Annotated[
        int, typer.Option("--max-batch-size", min=1, help="Encoder inputs (faces) per batch, across requests.")
    ] = 16,
    batch_timeout_ms: Annotated[
        float, typer.Option("--batch-timeout-ms", min=0.0, help="Longest wait for a batch to fill, in ms.")
    ] = 10.0,
    max_queue: Annotated[
        int,
        typer.Option("--max-queue", min=1, help="Requests in progress / encoder inputs waiting before 503 (busy)."),
    ] = 256,
    max_upload_mb: Annotated[
        float,
        typer.Option(
            "--max-upload-mb", min=0.001, help="Largest request body in MB (413 beyond), and largest live frame."
        ),
    ] = 20.0,
    max_streams: Annotated[
        int,
        typer.Option("--max-streams", min=1, help="Live WebSocket streams (/v1/stream) at once; more are refused."),
    ] = 8,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Threads that decode and detect faces (default: cores, max 4)."),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env",
            help="Name of an environment variable holding the API key: clients then send 'Authorization: Bearer KEY' "
            "(browsers, on /v1/stream: the subprotocol bearer.<base64url KEY>; /health and the page stay open).",
        ),
    ] = None,
) -> None:
    """Serve the model over HTTP: POST /v1/predict, the live WebSocket /v1/stream, GET /v1/info, /health, /docs,
    and a page at /."""
    import logging

    with user_errors():
        try:
            import uvicorn

            from emonet_face.serve import ServeConfig, create_app
        except ImportError as exc:
            fail(f"serve needs FastAPI and uvicorn ({exc.name} is missing); pip install 'emonet-face[serve]'")
        api_key = None
        if api_key_env is not None:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                fail(f"--api-key-env {api_key_env}: that environment variable is not set or empty; export the key in it")
        config = ServeConfig(
            model=model,
            encoder=encoder,
            heads=heads,
            revision=revision,
            backend=backend,
            device=device,
            dtype=dtype,
            cache_dir=str(cache_dir) if isinstance(cache_dir, Path) else cache_dir,
            faces=faces,
            detector=detector,
            margin=margin,
            min_face_score=min_face_score,
            align=align,
            max_batch_size=max_batch_size,
            batch_timeout_ms=batch_timeout_ms,
            max_queue=max_queue,
            max_upload_mb=max_upload_mb,
            workers=workers or _default_workers(),
            max_streams=max_streams,
            api_key=api_key,
        )
        config.check()
        if faces != "none":  # an unknown detector or missing weights: fail now, not on the first request
            from emonet_face.faces import get_detector

            get_detector(detector, **config.detector_options)
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
        app = create_app(config)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="info",
                timeout_graceful_shutdown=60,
                # live frames up to twice the upload limit reach /v1/stream, which answers an error for those
                # over it; bigger ones close the connection (1009). JPEG frames do not compress: no deflate.
                ws_max_size=2 * config.max_upload_bytes,
                ws_per_message_deflate=False,
            )
        )
        failure: list[str] = []

        def stop(message: str) -> None:
            failure.append(message)
            server.should_exit = True

        app.state.on_load_error = stop
        _run_until_stopped(server)
        if failure:
            fail(f"model did not load: {failure[0]}")


def _run_until_stopped(server) -> None:
    """Run uvicorn; SIGTERM / Ctrl-C stop it gracefully (no new connections, in-flight requests
    finish) and the command then exits 0. uvicorn re-raises the signal it caught once it has shut
    down (which would end the process with -15); the handlers installed here take that re-raise."""
    import signal

    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
