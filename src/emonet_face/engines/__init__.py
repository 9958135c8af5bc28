"""Execution engines for ``predict`` and ``embed``: ``local`` (one process + DataLoader workers, in
:mod:`emonet_face.pipeline`) and ``ray`` (Ray Data across the cores and GPUs of a cluster, in
:mod:`emonet_face.engines.ray`). Ray is an optional extra: importing it happens only on use."""

from __future__ import annotations

from typing import Any

from emonet_face.errors import EmoNetError

__all__ = ["ENGINES", "RayOptions", "require_ray"]

ENGINES = ("local", "ray")


def require_ray() -> Any:
    """``import ray`` or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise EmoNetError("--engine ray needs Ray Data: pip install 'emonet-face[ray]'") from None
    return ray


from emonet_face.engines.options import RayOptions  # noqa: E402
