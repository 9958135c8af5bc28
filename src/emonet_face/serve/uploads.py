"""A request's pictures and fields: multipart ``file`` fields or JSON base64 ``images``, written to
the request's temporary folder, and its ``faces`` / ``fps`` / ``max_frames`` (query parameters win
over form and JSON fields)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException

from emonet_face.serve.config import FACE_MODES

__all__ = ["Upload", "bad_request", "read_uploads", "request_parameters"]

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
_UNSAFE = re.compile(r"[^\w.\- ]+")


@dataclass
class Upload:
    name: str
    """What the ``path`` column says: the uploaded file name, or ``image<i>``."""
    file: Path


def bad_request(message: str) -> HTTPException:
    return HTTPException(400, message)


def _safe_name(name: str, index: int) -> str:
    """A file name for the temporary copy: the upload's base name (its suffix tells videos apart)."""
    base = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name).strip(". ") or f"image{index}"
    return base[-120:]


async def read_uploads(request: Request, folder: Path) -> tuple[list[Upload], dict[str, str]]:
    """The request's images (multipart ``file`` fields or JSON base64 ``images``) written to
    ``folder``, and its other fields (``faces``, ``fps``, ``max_frames``) as strings."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        uploads, fields = await _read_multipart(request, folder)
    elif content_type == "application/json":
        uploads, fields = _read_json(await request.body(), folder)
    else:
        raise bad_request(
            f"unsupported content type {content_type or '(none)'!r}; send multipart/form-data with 'file' fields "
            'or application/json {"images": ["<base64>", ...]}'
        )
    if not uploads:
        raise bad_request("no images in the request; send one or more 'file' fields (or JSON \"images\")")
    return uploads, fields


async def _read_multipart(request: Request, folder: Path) -> tuple[list[Upload], dict[str, str]]:
    uploads: list[Upload] = []
    fields: dict[str, str] = {}
    form = await request.form(max_files=10_000, max_fields=100)
    try:
        for key, value in form.multi_items():
            if isinstance(value, str):
                if key != "file":
                    fields[key] = value
                continue
            if key != "file":
                raise bad_request(f"file field named {key!r}; send images as 'file' fields")
            index = len(uploads)
            target = folder / str(index) / _safe_name(value.filename or "", index)
            target.parent.mkdir()
            await asyncio.get_running_loop().run_in_executor(None, _copy_upload, value.file, target)
            uploads.append(Upload(value.filename or f"image{index}", target))
    finally:
        await form.close()
    return uploads, fields


def _read_json(body: bytes, folder: Path) -> tuple[list[Upload], dict[str, str]]:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON ({exc}); send {{\"images\": [\"<base64>\", ...]}}") from None
    images = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise bad_request('JSON body needs "images": a list of base64-encoded image files')
    fields = {key: str(payload[key]) for key in ("faces", "fps", "max_frames") if payload.get(key) is not None}
    uploads = []
    for index, text in enumerate(images):
        try:
            data = base64.b64decode(_DATA_URL.sub("", text.strip()), validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"images[{index}] is not valid base64; encode the image file's bytes") from None
        target = folder / str(index) / f"image{index}"
        target.parent.mkdir()
        target.write_bytes(data)
        uploads.append(Upload(f"image{index}", target))
    return uploads, fields


def _copy_upload(source: Any, target: Path) -> None:
    source.seek(0)
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def request_parameters(
    fields: dict[str, str], faces: str | None, fps: float | None, max_frames: int | None, default: str
) -> tuple[str, float, int | None]:
    """Query parameters win over form/JSON fields; bad values are 422 like FastAPI's own checks."""
    faces = faces or fields.get("faces") or default
    if faces not in FACE_MODES:
        raise HTTPException(422, f"faces={faces}: use one of {', '.join(FACE_MODES)}")
    if fps is None and "fps" in fields:
        try:
            fps = float(fields["fps"])
        except ValueError:
            raise HTTPException(422, f"fps={fields['fps']}: not a number") from None
    fps = 1.0 if fps is None else fps
    if not math.isfinite(fps) or fps <= 0:
        raise HTTPException(422, f"fps={fps}: must be a positive number of frames per second")
    if max_frames is None and fields.get("max_frames"):
        try:
            max_frames = int(fields["max_frames"])
        except ValueError:
            raise HTTPException(422, f"max_frames={fields['max_frames']}: not a whole number") from None
    if max_frames is not None and max_frames < 1:
        raise HTTPException(422, f"max_frames={max_frames}: must be at least 1")
    return faces, fps, max_frames
