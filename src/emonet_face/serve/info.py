"""The service routes: ``GET /health`` (never needs the key), ``GET /v1/info`` (model, limits and
taxonomy, for the page and for clients) and the page at ``/`` with its files under ``/static``."""

from __future__ import annotations

from dataclasses import asdict
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, JSONResponse

from emonet_face import taxonomy as tx
from emonet_face._version import __version__
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
        "load": {"streams": service.streams, "requests": service.in_progress},
        "batches": {"run": service.batcher.batches if service.batcher else 0,
                    "items": service.batcher.items if service.batcher else 0},
        "auth": config.api_key is not None,
    }  # fmt: skip
