"""The HTTP API (FastAPI) around one loaded :class:`~emonet_face.pipeline.EmoNetFace`.

A request goes through the pipeline's own stages, so its rows equal ``emonet-face predict``'s
for the same files: uploads are written to a per-request temporary folder, then decoded, face
detected and preprocessed in a thread pool (``--workers`` threads; the event loop never decodes),
then every encoder input is queued on the :class:`~emonet_face.serve.batcher.Batcher`, whose
single worker thread runs the encoder and the heads on items of concurrent requests together
(:meth:`EmoNetFace.encode_items`, :meth:`EmoNetFace.head_scores`); the score table
(:meth:`EmoNetFace.items_table`) and its JSON rows are built back in the pool.

Limits: the request body is counted while it is read (413 past ``--max-upload-mb``), images over
the decompression-bomb limit are refused from their header (:func:`emonet_face.inputs.load_image`),
requests in progress and queued encoder inputs are bounded (503 + ``Retry-After``). Every error is
``{"error": "..."}``; a traceback goes to the server log only.

The live WebSocket ``/v1/stream`` (:mod:`emonet_face.serve.stream`) shares the model, the batcher and
the decode pool with ``/v1/predict``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import math
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from emonet_face import taxonomy as tx
from emonet_face._version import __version__
from emonet_face.errors import EmoNetError, InputError, error_text
from emonet_face.explain import METHODS, Explainer, placement_for
from emonet_face.faces import FaceMode, get_detector
from emonet_face.inputs.video import is_video
from emonet_face.media import Item, media_stages
from emonet_face.options import FaceOptions, MediaOptions, ModelOptions
from emonet_face.pipeline import EmoNetFace, Scored
from emonet_face.runtime import BACKENDS as BUILTIN_BACKENDS
from emonet_face.serve.batcher import Batcher, QueueFull
from emonet_face.serve.records import records as _records
from emonet_face.serve.stream import STREAM_PATH, add_stream_route
from emonet_face.tracking import FaceTracker

if TYPE_CHECKING:
    from emonet_face.media import Expand

__all__ = ["BACKENDS", "FACE_MODES", "ServeConfig", "create_app", "load_model"]

log = logging.getLogger("emonet_face.serve")

BACKENDS = BUILTIN_BACKENDS
FACE_MODES = tuple(mode.value for mode in FaceMode)
RETRY_AFTER_S = 1
STATIC = resources.files("emonet_face.serve") / "static"


@dataclass
class ServeConfig:
    """Everything ``emonet-face serve`` was started with (shown, minus the key, by ``/v1/info``)."""

    model: str = "large"
    encoder: str | None = None
    heads: str | None = None
    revision: str | None = None
    backend: str = "auto"
    device: str | None = None
    dtype: str = "auto"
    normalize: bool = True
    cache_dir: str | None = None
    faces: str = "auto"
    detector: str | None = None
    margin: float = 0.4
    min_face_score: float | None = None
    align: bool = False
    max_batch_size: int = 16
    batch_timeout_ms: float = 10.0
    max_queue: int = 256
    max_upload_mb: float = 20.0
    workers: int = 2
    max_streams: int = 8
    """Live WebSocket streams (``/v1/stream``) open at once; more are refused (close code 1013)."""
    api_key: str | None = field(default=None, repr=False)

    @property
    def model_options(self) -> ModelOptions:
        """The model options (checked as every command checks them)."""
        return ModelOptions(
            model=self.model, encoder=self.encoder, heads=self.heads, revision=self.revision, cache_dir=self.cache_dir,
            device=self.device, backend=self.backend, dtype=self.dtype, normalize=self.normalize,
        )

    def face_options(self, faces: str | None = None, detector: Any = None) -> FaceOptions:
        """The face options, with a request's own ``faces`` mode and a ready ``detector`` if given."""
        return FaceOptions(
            faces=faces or self.faces,
            detector=detector if detector is not None else self.detector,
            min_face_score=self.min_face_score,
            align=self.align,
            margin=self.margin,
        )

    @property
    def detector_options(self) -> dict[str, float]:
        """Keyword arguments for :func:`emonet_face.faces.get_detector` (``--min-face-score``)."""
        return self.face_options().detector_options

    def check(self) -> None:
        """Raise :class:`InputError` (one line, naming the option) for values the server cannot run with."""
        self.model_options  # noqa: B018  (checks the model options)
        self.face_options()
        problems = {
            "--max-batch-size": self.max_batch_size < 1 and "must be at least 1",
            "--batch-timeout-ms": self.batch_timeout_ms < 0 and "must be 0 or more",
            "--max-queue": self.max_queue < 1 and "must be at least 1",
            "--max-upload-mb": self.max_upload_mb <= 0 and "must be positive",
            "--workers": self.workers < 1 and "must be at least 1",
            "--max-streams": self.max_streams < 1 and "must be at least 1",
        }
        for option, problem in problems.items():
            if problem:
                raise InputError(f"{option} {getattr(self, option[2:].replace('-', '_'))}: {problem}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def load_model(config: ServeConfig) -> EmoNetFace:
    """Load the model the way ``predict`` does (same options, same defaults)."""
    return EmoNetFace.from_pretrained(options=config.model_options)


# --- errors --------------------------------------------------------------------------------------
class UploadTooLarge(Exception):
    """The request body passed ``--max-upload-mb`` while it was being read."""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) + "; see /docs for the parameters"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"{request.url.path}: no such endpoint; see /docs"
        elif exc.status_code == 405:
            message = f"{request.method} {request.url.path}: method not allowed; see /docs"
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc))

    @app.exception_handler(UploadTooLarge)
    async def too_large(request: Request, exc: UploadTooLarge) -> JSONResponse:
        return _error(413, str(exc))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")


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
        state = {"read": 0, "done": False}
        limit = self.limit

        async def guarded_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                state["done"] = not message.get("more_body", False)
                if state["read"] > limit:
                    raise UploadTooLarge(
                        f"request body over the upload limit of {_mb(limit)}; send smaller or fewer files "
                        "(the server's --max-upload-mb)"
                    )
            elif message["type"] == "http.disconnect":
                state["done"] = True
            return message

        async def drain() -> None:
            while not state["done"] and state["read"] <= self.drain_cap:
                message = await receive()
                state["read"] += len(message.get("body", b""))
                state["done"] = message["type"] != "http.request" or not message.get("more_body", False)

        async def guarded_send(message: dict) -> None:
            if message["type"] == "http.response.start" and not state["done"]:
                await drain()
            await send(message)

        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await drain()
            message = (
                f"request body of {_mb(int(declared))} is over the upload limit of {_mb(limit)}; "
                "send smaller or fewer files (the server's --max-upload-mb)"
            )
            await _send_json(send, 413, {"error": message})
            return
        await self.app(scope, guarded_receive, guarded_send)


async def _send_json(send: Callable, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


# --- the service -----------------------------------------------------------------------------------
@dataclass
class _Upload:
    name: str
    """What the ``path`` column says: the uploaded file name, or ``image<i>``."""
    file: Path


class Service:
    """The loaded model, its batcher and the decode pool; built once by the app's lifespan."""

    def __init__(self, config: ServeConfig, loader: Callable[[ServeConfig], EmoNetFace] = load_model) -> None:
        self.config = config
        self.loader = loader
        self.net: EmoNetFace | None = None
        self.batcher: Batcher | None = None
        self.load_error: str | None = None
        self.in_progress = 0
        self.streams = 0
        """Live streams open now (``/v1/stream``)."""
        self.pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="emonet-face-decode")
        self.explain_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emonet-face-explain")
        """Explanations take seconds of forward and backward passes: one at a time, beside the batcher."""
        self._local = threading.local()

    def load(self) -> None:
        """Load the model and start the encoder thread (``/health`` says ok only after this)."""
        net = self.loader(self.config)
        self.batcher = Batcher(
            net.scorer.encode,
            max_batch_size=self.config.max_batch_size,
            timeout_s=self.config.batch_timeout_ms / 1000,
            max_queue=self.config.max_queue,
        ).start()
        self.net = net

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()
        self.pool.shutdown(wait=True)
        self.explain_pool.shutdown(wait=True)

    # runs in the decode pool ------------------------------------------------------------------
    def detector(self) -> Any:
        """One face detector per decode thread (native detectors are not shared between threads)."""
        if not hasattr(self._local, "detector"):
            self._local.detector = get_detector(self.config.detector, **self.config.detector_options)
        return self._local.detector

    def prepare(self, uploads: list[_Upload], faces: str, fps: float, max_frames: int | None) -> list[list[Item]]:
        """Decode, detect faces and preprocess each upload (the pipeline's stages 1–4)."""

        assert self.net is not None
        detector = self.detector() if faces != "none" else self.config.detector
        source, expand = media_stages(
            [u.file for u in uploads], self.config.face_options(faces, detector), MediaOptions(fps, max_frames)
        )
        out = []
        for upload in uploads:
            items = self.net.prepare({"path": upload.name}, upload.file, source=source, expand=expand)
            for item in items:  # messages name the upload, never the server's temporary file
                if item.error:
                    item.error = item.error.replace(str(upload.file), upload.name)
            out.append(items)
        return out

    def explain(self, upload: _Upload, request: ExplainRequest) -> list[dict[str, Any]]:
        """Maps for one still picture (the explain pool's one thread). Forward and backward passes run
        on the PyTorch encoder (:meth:`EmoNetFace.torch_encoder`, loaded on the first request when the
        server runs a compiled one), never on the batcher's compiled encoder, whose runtime is not
        shared between threads; scores can therefore differ from ``/v1/predict``'s in the last digits.
        Each row carries ``crop``: where the crop lies in the picture (centre, size, turn), for drawing."""
        assert self.net is not None
        net = self.net
        detector = self.detector() if request.faces != "none" else self.config.detector
        source, expand = media_stages([upload.file], self.config.face_options(request.faces, detector))
        chosen: Expand = expand
        if request.face is not None:

            def chosen(ids: dict[str, Any], image: Any) -> list:
                return [pair for pair in expand(ids, image) if pair[0].get("face") == request.face]

        twin = net.torch_encoder()
        assert net.heads is not None  # torch_encoder() refused the one model without them (heads in the graph)
        explainer = Explainer(twin, net.heads, method=request.method, torch_encoder=twin, batch_size=4, **request.options)
        rows = []
        for image in net.explain_images(
            [upload.file],
            emotions=request.emotions,
            top=request.top,
            explainer=explainer,
            source=source,
            expand=chosen,
            progress=False,
        ):
            for crop in image.crops:
                place = None
                if image.image is not None:
                    place = asdict(placement_for(crop, image.image.size, self.config.margin, self.config.align))
                for row in crop.rows(image.method):
                    row["path"] = upload.name
                    if row.get("error"):
                        row["error"] = str(row["error"]).replace(str(upload.file), upload.name)
                    if row.get("saliency") is not None:
                        row["saliency"] = [round(float(v), 6) for v in row["saliency"]]
                    rows.append({**row, "crop": place})
        return rows

    def rows(self, items: list[Item], results: list[Scored], tracked: bool) -> list[dict[str, Any]]:
        """The score table's rows as JSON objects, built in the pool (pandas work stays off the event
        loop). ``tracked`` (a video): one track id per person, as ``predict`` does."""
        assert self.net is not None
        return _records(self.net.scorer.table(items, results, annotate=FaceTracker() if tracked else None))


@dataclass
class ExplainRequest:
    """What ``/v1/explain`` was asked for."""

    faces: str
    face: int | None
    emotions: str | None
    top: int
    method: str
    options: dict[str, int]


# --- request parsing -------------------------------------------------------------------------------
_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
_UNSAFE = re.compile(r"[^\w.\- ]+")


def _safe_name(name: str, index: int) -> str:
    """A file name for the temporary copy: the upload's base name (its suffix tells videos apart)."""
    base = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name).strip(". ") or f"image{index}"
    return base[-120:]


def _bad(message: str) -> HTTPException:
    return HTTPException(400, message)


async def _read_uploads(request: Request, folder: Path) -> tuple[list[_Upload], dict[str, str]]:
    """The request's images (multipart ``file`` fields or JSON base64 ``images``) written to
    ``folder``, and its other fields (``faces``, ``fps``, ``max_frames``) as strings."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    uploads: list[_Upload] = []
    fields: dict[str, str] = {}
    if content_type == "multipart/form-data":
        form = await request.form(max_files=10_000, max_fields=100)
        try:
            for key, value in form.multi_items():
                if isinstance(value, str):
                    if key != "file":
                        fields[key] = value
                    continue
                if key != "file":
                    raise _bad(f"file field named {key!r}; send images as 'file' fields")
                index = len(uploads)
                target = folder / str(index) / _safe_name(value.filename or "", index)
                target.parent.mkdir()
                await asyncio.get_running_loop().run_in_executor(None, _copy_upload, value.file, target)
                uploads.append(_Upload(value.filename or f"image{index}", target))
        finally:
            await form.close()
    elif content_type == "application/json":
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _bad(f"request body is not valid JSON ({exc}); send {{\"images\": [\"<base64>\", ...]}}") from None
        images = payload.get("images") if isinstance(payload, dict) else None
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise _bad('JSON body needs "images": a list of base64-encoded image files')
        for key in ("faces", "fps", "max_frames"):
            if isinstance(payload, dict) and payload.get(key) is not None:
                fields[key] = str(payload[key])
        for index, text in enumerate(images):
            try:
                data = base64.b64decode(_DATA_URL.sub("", text.strip()), validate=True)
            except (binascii.Error, ValueError):
                raise _bad(f"images[{index}] is not valid base64; encode the image file's bytes") from None
            target = folder / str(index) / f"image{index}"
            target.parent.mkdir()
            target.write_bytes(data)
            uploads.append(_Upload(f"image{index}", target))
    else:
        raise _bad(
            f"unsupported content type {content_type or '(none)'!r}; send multipart/form-data with 'file' fields "
            'or application/json {"images": ["<base64>", ...]}'
        )
    if not uploads:
        raise _bad("no images in the request; send one or more 'file' fields (or JSON \"images\")")
    return uploads, fields


def _copy_upload(source: Any, target: Path) -> None:
    source.seek(0)
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def _parameters(fields: dict[str, str], faces: str | None, fps: float | None, max_frames: int | None, default: str):
    """Query parameters win over form/JSON fields; bad values are 422 like FastAPI's own checks."""

    def bad(message: str) -> HTTPException:
        return HTTPException(422, message)

    faces = faces or fields.get("faces") or default
    if faces not in FACE_MODES:
        raise bad(f"faces={faces}: use one of {', '.join(FACE_MODES)}")
    if fps is None and "fps" in fields:
        try:
            fps = float(fields["fps"])
        except ValueError:
            raise bad(f"fps={fields['fps']}: not a number") from None
    fps = 1.0 if fps is None else fps
    if not math.isfinite(fps) or fps <= 0:
        raise bad(f"fps={fps}: must be a positive number of frames per second")
    if max_frames is None and fields.get("max_frames"):
        try:
            max_frames = int(fields["max_frames"])
        except ValueError:
            raise bad(f"max_frames={fields['max_frames']}: not a whole number") from None
    if max_frames is not None and max_frames < 1:
        raise bad(f"max_frames={max_frames}: must be at least 1")
    return faces, fps, max_frames


# --- the app ---------------------------------------------------------------------------------------
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "faces": {"type": "string", "enum": list(FACE_MODES)},
                        "fps": {"type": "number"},
                        "max_frames": {"type": "integer"},
                    },
                    "required": ["file"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"images": {"type": "array", "items": {"type": "string", "format": "byte"}}},
                    "required": ["images"],
                }
            },
        },
    }
}


def create_app(config: ServeConfig, loader: Callable[[ServeConfig], EmoNetFace] = load_model) -> FastAPI:
    """The FastAPI app. The model loads in a background thread at start-up (``/health`` answers
    503 until it is ready); ``app.state.service.load_error`` holds the message if loading fails,
    and ``app.state.on_load_error`` (if set) is called with it (the CLI stops the server)."""

    service = Service(config, loader)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()

        def load() -> None:
            try:
                service.load()
                log.info("model loaded; ready")
            except Exception as exc:

                service.load_error = error_text({"path": config.model}, exc)
                callback = getattr(app.state, "on_load_error", None)
                if callback is not None:
                    loop.call_soon_threadsafe(callback, service.load_error)

        loading = threading.Thread(target=load, name="emonet-face-load", daemon=True)
        loading.start()
        yield
        await loop.run_in_executor(None, service.close)

    app = _make_fastapi(
        title="emonet-face",
        version=__version__,
        description="EmoNet-Face emotion scores (40 emotions + 4 dimensions) for face images. "
        f"POST images to /v1/predict; stream camera frames to the WebSocket {STREAM_PATH} (see the module "
        "emonet_face.serve.stream); the page at / does both in a browser.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.config = config
    app.add_middleware(BodyGuard, limit=config.max_upload_bytes)
    _install_error_handlers(app)
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key> (when --api-key-env is set)")

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if config.api_key is None:
            return
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), config.api_key.encode()):
            raise HTTPException(
                401,
                "missing or wrong API key; send the header 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def ready() -> EmoNetFace:
        if service.net is None:
            message = service.load_error or "the model is still loading; retry in a moment"
            raise HTTPException(503, message, headers={"Retry-After": str(RETRY_AFTER_S)})
        return service.net

    @asynccontextmanager
    async def request_slot():
        """One request in progress (503 + ``Retry-After`` past ``--max-queue``) and its upload folder,
        removed off the event loop when the request ends."""
        if service.in_progress >= config.max_queue:
            raise HTTPException(
                503,
                f"server busy ({service.in_progress} requests in progress); retry after {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        service.in_progress += 1
        folder = Path(tempfile.mkdtemp(prefix="emonet-face-serve-"))
        try:
            yield folder
        finally:
            service.in_progress -= 1
            asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, folder, True)

    @app.get("/health", tags=["service"], summary="200 once the model is loaded, 503 before")
    def health() -> JSONResponse:
        if service.net is None:
            status = "error" if service.load_error else "loading"
            return JSONResponse({"status": status, "error": service.load_error}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/info", tags=["service"], dependencies=[Depends(authorised)], summary="Model, limits and taxonomy")
    def info() -> dict[str, Any]:
        net = ready()
        return _info(net, config, service, __version__)

    @app.post(
        "/v1/predict",
        tags=["predict"],
        dependencies=[Depends(authorised)],
        summary="Score images (multipart 'file' fields, or JSON base64 'images'): one row per face",
        openapi_extra=PREDICT_BODY,
    )
    async def predict(
        request: Request,
        faces: str | None = Query(None, description="detect | none | auto (default: the server's --faces)"),
        fps: float | None = Query(None, gt=0, description="Video: frames scored per second (default 1)"),
        max_frames: int | None = Query(None, ge=1, description="Video: at most this many frames per video"),
    ) -> dict[str, list[dict[str, Any]]]:
        ready()
        loop = asyncio.get_running_loop()
        async with request_slot() as folder:
            uploads, fields = await _read_uploads(request, folder)
            mode, fps_, max_frames_ = _parameters(fields, faces, fps, max_frames, config.faces)
            prepared = await loop.run_in_executor(service.pool, service.prepare, uploads, mode, fps_, max_frames_)
            if len(prepared) == 1 and len(prepared[0]) == 1 and prepared[0][0].error:
                raise _bad(prepared[0][0].error)
            items = [item for group in prepared for item in group]
            ready_items = [item for item in items if item.inputs is not None]
            assert service.batcher is not None
            try:
                futures = service.batcher.submit(ready_items)
            except QueueFull as exc:
                raise HTTPException(
                    503, f"server busy: {exc}; retry after {RETRY_AFTER_S} s", headers={"Retry-After": str(RETRY_AFTER_S)}
                ) from None
            results = list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
            tracked = mode != "none" and any(is_video(u.file) for u in uploads)
            rows = await loop.run_in_executor(service.pool, service.rows, items, results, tracked)
            # a Response skips FastAPI's per-field re-validation of ~140 keys per row (the annotation stays for /docs)
            return JSONResponse({"rows": rows})  # type: ignore[return-value]

    add_stream_route(app, service)

    @app.post(
        "/v1/explain",
        tags=["predict"],
        dependencies=[Depends(authorised)],
        summary="Which parts of each face drive its emotions: maps over the encoder's patch grid (one still picture)",
        openapi_extra=PREDICT_BODY,
    )
    async def explain(
        request: Request,
        faces: str | None = Query(None, description="detect | none | auto (default: the server's --faces)"),
        face: int | None = Query(None, ge=0, description="Explain only this face (its `face` number in /v1/predict)"),
        emotions: str | None = Query(None, description="Head keys, comma-separated (default: each face's top ones)"),
        top: int = Query(1, ge=1, le=44, description="Without `emotions`: explain each face's top K emotions"),
        method: str = Query("integrated-gradients", description=f"{' | '.join(METHODS)}"),
        steps: int | None = Query(None, ge=1, le=64, description="integrated-gradients: points on the path"),
        window: int | None = Query(None, ge=1, le=64, description="occlusion: window side in patches"),
    ) -> dict[str, list[dict[str, Any]]]:
        """One row per (face, emotion): ``path``, ``face``, ``emotion``, ``method``, ``grid_rows``,
        ``grid_cols``, ``saliency`` (row-major over the patch grid of the crop; positive raises the
        emotion's centred score), ``score``, ``error``, and ``crop`` (``cx``, ``cy``, ``width``,
        ``height``, ``angle``: where the crop lies in the picture). Takes seconds on a CPU."""
        ready()
        if method not in METHODS:
            raise HTTPException(422, f"method={method}: use one of {', '.join(METHODS)}")
        loop = asyncio.get_running_loop()
        async with request_slot() as folder:
            uploads, fields = await _read_uploads(request, folder)
            mode, _, _ = _parameters(fields, faces, None, None, config.faces)
            if len(uploads) != 1 or is_video(uploads[0].file):
                raise _bad("explain takes one still picture per request; send one 'file' field")
            options = {"steps": steps} if steps is not None and method == "integrated-gradients" else {}
            options.update({"window": window} if window is not None and method == "occlusion" else {})
            asked = ExplainRequest(mode, face, emotions, top, method, options)
            try:
                rows = await loop.run_in_executor(service.explain_pool, service.explain, uploads[0], asked)
            except EmoNetError as exc:  # unknown emotion key, no encoder for gradients…
                raise _bad(str(exc)) from None
            if len(rows) == 1 and rows[0].get("error"):
                raise _bad(rows[0]["error"])
            if face is not None and not rows:
                raise _bad(f"face={face}: no such face in this picture (faces={mode}); see /v1/predict's face column")
            return JSONResponse({"rows": rows})  # type: ignore[return-value]

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def _make_fastapi(**kwargs: Any) -> FastAPI:
    """FastAPI with /docs served from the package's own Swagger UI copy (``fastapi-offline``): no CDN."""
    from fastapi_offline import FastAPIOffline

    return FastAPIOffline(**kwargs)


def _info(net: EmoNetFace, config: ServeConfig, service: Service, version: str) -> dict[str, Any]:
    from emonet_face.viz.charts import FAMILY_COLOURS  # loads matplotlib: only when /v1/info is asked

    encoder = net.encoder
    described = net.describe()["encoder"]
    settings = {k: v for k, v in asdict(config).items() if k != "api_key"}
    return {
        "package_version": version,
        "model": config.model,
        "encoder": getattr(encoder, "name", None),
        "encoder_revision": getattr(encoder, "revision", None),
        "heads": net.heads_ref,
        "heads_revision": config.revision,
        "backend": described.get("backend", config.backend),  # what runs, not what was asked ("auto")
        "precision": described.get("precision", config.dtype),
        "device": str(net.device),
        "head_keys": list(net.keys),
        "emotions": [{"key": e.key, "name": e.name, "family": e.family} for e in tx.EMOTIONS],
        "dimensions": [
            {"key": d.key, "name": d.name, "low": d.low, "high": d.high, "description": d.description}
            for d in tx.EXTRA_DIMENSIONS
        ],
        "families": [{"name": f, "colour": FAMILY_COLOURS[f]} for f in tx.FAMILIES],
        "settings": settings,
        "batches": {"run": service.batcher.batches if service.batcher else 0,
                    "items": service.batcher.items if service.batcher else 0},
        "auth": config.api_key is not None,
    }  # fmt: skip
