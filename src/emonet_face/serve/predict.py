"""``POST /v1/predict`` and ``POST /v1/explain``: uploads → rows.

A request goes through the pipeline's own stages, so its rows equal ``emonet-face predict``'s for
the same files: uploads are written to a per-request temporary folder, then decoded, face detected
and preprocessed in the decode pool (``--workers`` threads; the event loop never decodes), then
every encoder input is queued on the :class:`~emonet_face.serve.batcher.Batcher`, whose single
worker thread runs :meth:`Scorer.encode <emonet_face.pipeline.Scorer.encode>` on items of
concurrent requests together; the score table (:meth:`Scorer.table
<emonet_face.pipeline.Scorer.table>`) and its JSON rows are built back in the pool.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from emonet_face.errors import EmoNetError
from emonet_face.explain import METHODS
from emonet_face.inputs.video import is_video
from emonet_face.serve.batcher import QueueFull
from emonet_face.serve.config import FACE_MODES
from emonet_face.serve.deps import ServiceDep, authorised, busy, ready, request_slot
from emonet_face.serve.service import ExplainRequest
from emonet_face.serve.uploads import bad_request, read_uploads, request_parameters

__all__ = ["PREDICT_BODY", "router"]

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
"""The request body as ``/docs`` shows it (the route reads it by hand: multipart or JSON)."""

FACES_QUERY = "detect | none | auto (default: the server's --faces)"

router = APIRouter(tags=["predict"], dependencies=[Depends(authorised)])


@router.post(
    "/v1/predict",
    summary="Score images (multipart 'file' fields, or JSON base64 'images'): one row per face",
    openapi_extra=PREDICT_BODY,
)
async def predict(
    request: Request,
    service: ServiceDep,
    faces: str | None = Query(None, description=FACES_QUERY),
    fps: float | None = Query(None, gt=0, description="Video: frames scored per second (default 1)"),
    max_frames: int | None = Query(None, ge=1, description="Video: at most this many frames per video"),
) -> dict[str, list[dict[str, Any]]]:
    ready(service)
    loop = asyncio.get_running_loop()
    async with request_slot(service) as folder:
        uploads, fields = await read_uploads(request, folder)
        mode, fps_, max_frames_ = request_parameters(fields, faces, fps, max_frames, service.config.faces)
        prepared = await loop.run_in_executor(service.pool, service.prepare, uploads, mode, fps_, max_frames_)
        if len(prepared) == 1 and len(prepared[0]) == 1 and prepared[0][0].error:
            raise bad_request(prepared[0][0].error)
        items = [item for group in prepared for item in group]
        ready_items = [item for item in items if item.inputs is not None]
        assert service.batcher is not None
        try:
            futures = service.batcher.submit(ready_items)
        except QueueFull as exc:
            raise busy(f"server busy: {exc}") from None
        results = list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        tracked = mode != "none" and any(is_video(u.file) for u in uploads)
        rows = await loop.run_in_executor(service.pool, service.rows, items, results, tracked)
        # a Response skips FastAPI's per-field re-validation of ~140 keys per row (the annotation stays for /docs)
        return JSONResponse({"rows": rows})  # type: ignore[return-value]


@router.post(
    "/v1/explain",
    summary="Which parts of each face drive its emotions: maps over the encoder's patch grid (one still picture)",
    openapi_extra=PREDICT_BODY,
)
async def explain(
    request: Request,
    service: ServiceDep,
    faces: str | None = Query(None, description=FACES_QUERY),
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
    ready(service)
    if method not in METHODS:
        raise HTTPException(422, f"method={method}: use one of {', '.join(METHODS)}")
    loop = asyncio.get_running_loop()
    async with request_slot(service) as folder:
        uploads, fields = await read_uploads(request, folder)
        mode, _, _ = request_parameters(fields, faces, None, None, service.config.faces)
        if len(uploads) != 1 or is_video(uploads[0].file):
            raise bad_request("explain takes one still picture per request; send one 'file' field")
        options = {"steps": steps} if steps is not None and method == "integrated-gradients" else {}
        options.update({"window": window} if window is not None and method == "occlusion" else {})
        asked = ExplainRequest(mode, face, emotions, top, method, options)
        try:
            rows = await loop.run_in_executor(service.explain_pool, service.explain, uploads[0], asked)
        except EmoNetError as exc:  # unknown emotion key, no encoder for gradients…
            raise bad_request(str(exc)) from None
        if len(rows) == 1 and rows[0].get("error"):
            raise bad_request(rows[0]["error"])
        if face is not None and not rows:
            raise bad_request(f"face={face}: no such face in this picture (faces={mode}); see /v1/predict's face column")
        return JSONResponse({"rows": rows})  # type: ignore[return-value]
