"""Encoder runtimes: everything that turns preprocessed pixels into image features.

* :mod:`~emonet_face.runtime.device`: what ``auto`` means for device, backend and precision.
* :mod:`~emonet_face.runtime.encoder`: the PyTorch SigLIP/SigLIP2 vision tower with its own image
  processor (:class:`ImageEncoder`), loaded from a Hub id or a local folder.
* :mod:`~emonet_face.runtime.backends`: the same tower on OpenVINO or ONNX Runtime
  (:class:`CompiledEncoder`), the on-disk conversion cache, and :func:`load_encoder`, the one factory.
* :mod:`~emonet_face.runtime.int8`: int8 on the CPU: the quantisation scheme, the runtime chosen
  for it, and the check-precision records an int8 load reads.
* :mod:`~emonet_face.runtime.exported`: a folder written by ``emonet-face export`` run behind the
  same interface (:class:`ExportedGraph`).

* :mod:`~emonet_face.runtime.base`: the :class:`Encoder` interface every runtime implements
  (``preprocess``, ``encode`` → :class:`Encoded`, ``dim``, ``describe()``, ``graph_heads``) and the
  backend registry (:func:`register_backend`). The scorer, the server and the Ray engine call only that.
"""

from emonet_face.runtime.backends import (
    CompiledEncoder,
    compiled_cache_dir,
    differentiable_encoder,
    load_encoder,
    record_precision_check,
)
from emonet_face.runtime.base import (
    Backend,
    BackendRequest,
    Encoded,
    Encoder,
    GraphHeads,
    available_backends,
    get_backend,
    register_backend,
)
from emonet_face.runtime.device import (
    BACKENDS,
    PRECISIONS,
    cpu_has_bf16,
    resolve_backend,
    resolve_device,
    resolve_dtype,
    resolve_precision,
)
from emonet_face.runtime.encoder import EncoderCheckpoint, ImageEncoder, quiet_transformers
from emonet_face.runtime.exported import ExportedGraph, is_exported

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "BackendRequest",
    "CompiledEncoder",
    "Encoded",
    "Encoder",
    "EncoderCheckpoint",
    "ExportedGraph",
    "GraphHeads",
    "ImageEncoder",
    "available_backends",
    "compiled_cache_dir",
    "cpu_has_bf16",
    "differentiable_encoder",
    "get_backend",
    "is_exported",
    "load_encoder",
    "quiet_transformers",
    "record_precision_check",
    "register_backend",
    "resolve_backend",
    "resolve_device",
    "resolve_dtype",
    "resolve_precision",
]
