"""The service routes: ``GET /health`` (never needs the key), ``GET /v1/info`` (model, limits and
taxonomy, for the page and for clients) and the page at ``/`` with its files under ``/static`` (and
its icon at ``/favicon.ico``)."""

from __future__ import annotations

from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, JSONResponse

from emonet_face import taxonomy as tx
from emonet_face._version import __version__
from emonet_face.hub import MODELS
from emonet_face.pipeline import EmoNetFace
from emonet_face.serve.config import ServeConfig
from emonet_face.serve.deps import ServiceDep, authorised, ready
from emonet_face.serve.service import Service

__all__ = ["STATIC", "router"]

STATIC = resources.files("emonet_face.serve") / "static"
"""The page's HTML, JS and CSS (shipped in the package: no CDN)."""

router = APIRouter()


@router.get("/health", tags=["service"], summary="200 once the model is loaded, 503 before")
def health(service: ServiceDep) -> JSONResponse:
    if service.net is None:
        status = "error" if service.load_error else "loading"
        return JSONResponse({"status": status, "error": service.load_error}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/v1/info", tags=["service"], dependencies=[Depends(authorised)], summary="Model, limits and taxonomy")
def info(service: ServiceDep) -> dict[str, Any]:
    net = ready(service)
    return _info(net, service.config, service, __version__)


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(str(STATIC / "index.html"), media_type="text/html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    """The page's icon where browsers look for it first (no 404 in the log on every page load)."""
    return FileResponse(str(STATIC / "favicon.ico"), media_type="image/vnd.microsoft.icon")


def _info(net: EmoNetFace, config: ServeConfig, service: Service, version: str) -> dict[str, Any]:
    from emonet_face.viz.charts import FAMILY_COLOURS  # loads matplotlib: only when /v1/info is asked

    encoder = net.encoder
    described = net.describe()["encoder"]
    settings = {k: v for k, v in asdict(config).items() if k != "api_key"}
    return {
        "package_version": version,
        **served_model(net, config),
        "encoder_revision": getattr(encoder, "revision", None),
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
        "load": {"streams": service.streams, "requests": service.in_progress},
        "batches": {"run": service.batcher.batches if service.batcher else 0,
                    "items": service.batcher.items if service.batcher else 0},
        "auth": config.api_key is not None,
    }  # fmt: skip


def served_model(net: EmoNetFace, config: ServeConfig) -> dict[str, Any]:
    """What is served, not what ``--model`` defaulted to: ``model`` is the released name only when its
    own heads and encoder are served; else the bundle or export folder, or "HEADS + ENCODER" (folder
    names, or Hub ids). ``heads`` / ``encoder``: the folder paths or Hub ids; ``*_source``: ``hub``,
    ``folder``, ``bundle`` or ``export``."""
    encoder = getattr(net.encoder, "name", None)
    if net.bundle is not None:
        sources = ("bundle", "bundle")
    elif net.heads is None:
        sources = ("export", "export")
    else:
        sources = (_source(net.heads_ref), _source(encoder))
    if sources[0] in ("bundle", "export"):
        model = str(config.model)
    elif config.model in MODELS and config.heads is None and config.encoder is None:
        model = config.model
    else:
        model = " + ".join(_label(ref) for ref in (net.heads_ref, encoder) if ref is not None)
    return {
        "model": model,
        "heads": net.heads_ref,
        "heads_source": sources[0],
        "encoder": encoder,
        "encoder_source": sources[1] if encoder is not None else None,
    }


def _source(ref: str | None) -> str:
    return "folder" if ref is not None and Path(ref).expanduser().is_dir() else "hub"


def _label(ref: str) -> str:
    """A folder by its name, a Hub id as it is."""
    return Path(ref).name if _source(ref) == "folder" else ref
