"""`emonet-face serve`: the HTTP API and its page (see :mod:`emonet_face.serve`).

The command only parses its options into a :class:`~emonet_face.serve.ServeConfig` and hands it to
:func:`emonet_face.serve.run.run_server`, which starts uvicorn and handles the signals.

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
    FacesOpt,
    ForcePrecisionOpt,
    HeadsOpt,
    MarginOpt,
    MinFaceScoreOpt,
    ModelOpt,
    NoNormalizeOpt,
    RevisionOpt,
)
from emonet_face.errors import require_extra

# --- the server's own options ---------------------------------------------------------------------
HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")]
PortOpt = Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")]
MaxBatchSizeOpt = Annotated[
    int, typer.Option("--max-batch-size", min=1, help="Encoder inputs (faces) per batch, across requests.")
]
BatchTimeoutOpt = Annotated[
    float, typer.Option("--batch-timeout-ms", min=0.0, help="Longest wait for a batch to fill, in ms.")
]
MaxQueueOpt = Annotated[
    int, typer.Option("--max-queue", min=1, help="Requests in progress / encoder inputs waiting before 503 (busy).")
]
MaxUploadOpt = Annotated[
    float,
    typer.Option("--max-upload-mb", min=0.001, help="Largest request body in MB (413 beyond), and largest live frame."),
]
MaxStreamsOpt = Annotated[
    int, typer.Option("--max-streams", min=1, help="Live WebSocket streams (/v1/stream) at once; more are refused.")
]
SendTimeoutOpt = Annotated[
    float,
    typer.Option("--send-timeout-s", min=0.001, help="Close a live stream whose client reads no reply for this long."),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=1, help="Threads that decode and detect faces (default: cores, max 4).")
]
ApiKeyEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key-env",
        help="Name of an environment variable holding the API key: clients then send 'Authorization: Bearer KEY' "
        "(browsers, on /v1/stream: the subprotocol bearer.<base64url KEY>; /health and the page stay open).",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _api_key(variable: str | None) -> str | None:
    """The key held by the environment variable ``--api-key-env`` names (none without the option)."""
    if variable is None:
        return None
    key = os.environ.get(variable)
    if not key:
        fail(f"--api-key-env {variable}: that environment variable is not set or empty; export the key in it")
    return key


def serve(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    model: ModelOpt = "large",
    encoder: EncoderOpt = None,
    heads: HeadsOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheOpt = None,
    backend: BackendOpt = "auto",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    no_normalize: NoNormalizeOpt = False,
    force_precision: ForcePrecisionOpt = False,
    faces: FacesOpt = "auto",
    detector: DetectorOpt = None,
    margin: MarginOpt = 0.4,
    min_face_score: MinFaceScoreOpt = None,
    align: AlignOpt = False,
    max_batch_size: MaxBatchSizeOpt = 16,
    batch_timeout_ms: BatchTimeoutOpt = 10.0,
    max_queue: MaxQueueOpt = 256,
    max_upload_mb: MaxUploadOpt = 20.0,
    max_streams: MaxStreamsOpt = 8,
    send_timeout_s: SendTimeoutOpt = 10.0,
    workers: WorkersOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
) -> None:
    """Serve the model over HTTP, with a web page.

    Endpoints: POST /v1/predict, the live WebSocket /v1/stream, GET /v1/info, /health, /docs, and a
    page at /.

    --faces is the default face mode; a request may pick its own (faces=...)."""
    with user_errors():
        require_extra("emonet_face.serve.run", feature="emonet-face serve", extra="serve")  # FastAPI, uvicorn, ...
        from emonet_face.serve.run import ServeConfig, run_server

        config = ServeConfig(
            model=model, encoder=encoder, heads=heads, revision=revision, backend=backend, device=device, dtype=dtype,
            normalize=not no_normalize, force_precision=force_precision, cache_dir=str(cache_dir) if isinstance(cache_dir, Path) else cache_dir,
            faces=faces, detector=detector, margin=margin, min_face_score=min_face_score, align=align,
            max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms, max_queue=max_queue,
            max_upload_mb=max_upload_mb, workers=workers or _default_workers(), max_streams=max_streams,
            send_timeout_s=send_timeout_s, api_key=_api_key(api_key_env),
        )  # fmt: skip
        failure = run_server(config, host, port)
        if failure is not None:
            fail(f"model did not load: {failure}")
