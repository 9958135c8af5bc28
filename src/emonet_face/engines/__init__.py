"""Execution engines for ``predict`` and ``embed``: ``local`` (one process + DataLoader workers, in
:mod:`emonet_face.pipeline`) and ``ray`` (Ray Data across the cores and GPUs of a cluster, in
:mod:`emonet_face.engines.ray`). Ray is an optional extra: importing it happens only on use."""

from __future__ import annotations

from typing import Any

from emonet_face.errors import require_extra

__all__ = ["ENGINES", "RayOptions", "require_ray"]

ENGINES = ("local", "ray")


def require_ray() -> Any:
    """``import ray`` or a one-line error saying how to install it."""
    ray = require_extra("ray", feature="--engine ray", extra="ray", package="Ray Data")
    require_extra("ray.data", feature="--engine ray", extra="ray", package="Ray Data")
    return ray


from emonet_face.engines.options import RayOptions  # noqa: E402
