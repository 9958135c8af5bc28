"""Device, backend and precision resolution for the encoder runtimes: what ``auto`` means here.

One place decides it for every runtime (PyTorch, OpenVINO, ONNX Runtime, exported graphs), so that
``predict``, ``serve``, ``embed`` and the Ray engine agree on what runs where.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from functools import cache
from pathlib import Path

import torch

from emonet_face.errors import InputError, ModelLoadError
from emonet_face.runtime.base import get_backend

__all__ = [
    "BACKENDS",
    "CPU_BF16_ENV",
    "PRECISIONS",
    "asks_int8",
    "cpu_has_bf16",
    "resolve_backend",
    "resolve_device",
    "resolve_dtype",
    "resolve_precision",
]

BACKENDS = ("auto", "torch", "openvino", "onnx")
PRECISIONS = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}
PRECISIONS |= {"float16": "float16", "fp16": "float16", "half": "float16", "int8": "int8"}
BACKEND_ENV = "EMONET_FACE_BACKEND"  # what "auto" means, e.g. torch for a test suite that compares with torch
DTYPE_ENV = "EMONET_FACE_DTYPE"
CPU_BF16_ENV = "EMONET_FACE_CPU_BF16"  # 0: behave as a CPU without bf16 (auto = float32); 1: claim it; unset: detect
OV_PRECISION = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
"""Our precision names → OpenVINO's ``INFERENCE_PRECISION_HINT`` values."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU. An unavailable CUDA request is a clear error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"{device}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{device}: CUDA is not available on this machine; use --device cpu")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device, backend: str = "torch") -> torch.dtype:
    """Encoder dtype: ``None``/``"auto"`` is bfloat16 where the hardware computes it natively, else
    float32 (see :func:`resolve_precision`)."""
    return getattr(torch, resolve_precision(dtype, device, backend))


def cpu_has_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512_BF16 or AMX): there bf16 is ~2x faster
    than float32; elsewhere it is emulated and slower, so ``auto`` precision stays float32.

    ``$EMONET_FACE_CPU_BF16`` replaces the detection: ``0`` hides bf16 (``auto`` means float32, as
    on an AVX2-only CPU), ``1`` claims it (``auto`` means bfloat16), unset or empty detects it. With
    ``0``, and ``ONEDNN_MAX_CPU_ISA=AVX2`` to cap the kernels oneDNN dispatches to, a bf16/AMX
    machine chooses as an AVX2-only one does (e.g. to reproduce that machine's results). It does not
    change what OpenVINO computes for an explicit ``bfloat16``: OpenVINO decides that from the CPU
    and :class:`~emonet_face.runtime.backends.GraphRuntime` reports it."""
    claim = os.environ.get(CPU_BF16_ENV, "").strip()
    if claim:
        if claim not in ("0", "1"):
            raise InputError(
                f"${CPU_BF16_ENV}={claim}: use 0 (no bf16: auto means float32), 1 (bf16) or leave it unset (detect)"
            )
        return claim == "1"
    return detect_cpu_bf16()


@cache
def detect_cpu_bf16() -> bool:
    """What the CPU itself says (AVX512_BF16 or AMX tiles), whatever ``$EMONET_FACE_CPU_BF16`` says."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        if check is not None and check():
            return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """``auto`` → ``torch`` on CUDA, ``openvino`` on CPU when installed, else ``torch``; any other name
    must be a registered backend (:func:`~emonet_face.runtime.base.register_backend`).

    CPU-only backends (OpenVINO, ONNX Runtime) asked for with a CUDA device are an error.
    ``$EMONET_FACE_BACKEND`` (when set) replaces ``auto``.
    """
    name = (backend or "auto").lower()
    if name == "auto":
        name = os.environ.get(BACKEND_ENV, "auto").lower() or "auto"
    if name == "auto":
        return "openvino" if device.type == "cpu" and installed("openvino") else "torch"
    spec = get_backend(name)
    if spec.cpu_only and device.type != "cpu":
        raise InputError(f"--backend {name} runs on the CPU; use --backend torch (or auto) with --device {device}")
    if spec.module and not installed(spec.module):
        extra = f" ({spec.install_hint})" if spec.install_hint else ""
        raise ModelLoadError(f"--backend {name}: the {spec.module} package is not installed{extra}; or use --backend torch")
    return spec.name


def asks_int8(dtype: str | torch.dtype | None) -> bool:
    """Whether ``dtype`` asks for int8: ``"int8"`` itself, or ``None``/``"auto"`` with
    ``$EMONET_FACE_DTYPE=int8`` (what ``auto`` resolves to on its own is never int8)."""
    if dtype is None or str(dtype) == "auto":
        dtype = os.environ.get(DTYPE_ENV) or None
    return str(dtype).lower() == "int8"


def resolve_precision(dtype: str | torch.dtype | None, device: torch.device, backend: str) -> str:
    """The encoder precision as a name: ``float32``, ``bfloat16`` or ``float16``.

    ``None``/``"auto"``: bfloat16 where the hardware computes it natively (CPU with AVX512_BF16 or
    AMX, see :func:`cpu_has_bf16`; CUDA GPUs with bf16), float32 elsewhere; ONNX Runtime always
    float32 on CPU (it has no fast bf16 kernels). An explicit ``float32`` is exact float32 on every
    backend. An explicit ``bfloat16`` on a CPU without native bf16: PyTorch emulates it (warns);
    OpenVINO decides what it computes (float32 on an AVX2-only CPU), which
    :class:`~emonet_face.runtime.backends.GraphRuntime` reports (and warns about). ``int8`` (CPU, ONNX
    Runtime dynamic quantisation, :mod:`~emonet_face.runtime.int8`) is never chosen by ``auto``: only
    an explicit ``int8`` (or ``$EMONET_FACE_DTYPE=int8``) asks for it.
    ``$EMONET_FACE_DTYPE`` (when set) replaces ``auto``.
    """
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype is None or dtype == "auto":
        dtype = os.environ.get(DTYPE_ENV) or None
    if dtype is None or dtype == "auto":
        if backend == "onnx":
            return "float32"
        if device.type == "cuda":
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        return "bfloat16" if device.type == "cpu" and cpu_has_bf16() else "float32"
    precision = PRECISIONS.get(dtype.lower())
    if precision is None:
        raise InputError(f"--dtype {dtype}: use auto, float32, bfloat16, float16 or int8")
    if precision == "int8":
        if backend != "onnx" or device.type != "cpu":
            raise InputError(
                f"--dtype int8 runs on ONNX Runtime on the CPU; use --backend auto (or onnx), not {backend} on {device}"
            )
        return precision
    if backend == "onnx" and precision != "float32":
        raise InputError(f"--dtype {dtype}: ONNX Runtime runs float32 on CPU; use --backend openvino for {precision}")
    native = precision == "bfloat16" and cpu_has_bf16()
    if backend == "torch" and precision != "float32" and device.type == "cpu" and not native:
        hidden = f"; ${CPU_BF16_ENV}=0" if os.environ.get(CPU_BF16_ENV, "").strip() == "0" else ""
        warnings.warn(
            f"--dtype {precision} on a CPU without native support (AVX512_BF16/AMX{hidden}): PyTorch emulates "
            "it, slower and less precise than float32",
            stacklevel=3,
        )
    # OpenVINO decides for itself what it computes in (float32 on a CPU without bf16): GraphRuntime
    # reports that and warns where it is not what was asked
    return precision


