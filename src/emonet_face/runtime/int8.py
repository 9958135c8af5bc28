"""int8 on the CPU: how the encoder is quantised, which runtime runs it, and what a ``check-precision``
run recorded about it on this CPU.

**Quantisation** (:func:`quantize_int8`): ONNX Runtime dynamic quantisation of the float32 ONNX
graph, after one exact rewrite: each MLP's bias add and tanh-GELU become one ``FastGelu`` node
(:func:`fuse_gelu`). Only ``MatMul`` nodes with constant weights are quantised (int8 weights per
output channel, 7-bit range without VNNI; activations quantised per call from their observed range,
no calibration data). What stays float32, where it costs little: the patch embedding (a ``Conv``),
every layer norm, GELU and softmax, the MatMuls of the attention-pooling head and of the emotion heads
(:data:`FLOAT32_NODES`: the pooling head's MLP and attention output run on one token per image,
under 0.1 % of the encoder's work; its key/value projections are not constant MatMuls in the traced
graph, so they stay float32 anyway), and the attention products (query x key, probabilities x value).
Those last cost the most of what stays float32 (17 % of the so400m int8 graph's time on an AVX2 EPYC,
ONNX Runtime profile; quantising them too ran 7 % faster), but dynamic quantisation gives a whole
tensor one scale: the softmax probabilities of all heads and images would share a step of max/255,
about 0.004 where one head attends sharply, so the many small weights of a diffuse head (1/576 each
at 384 px) round to 0 or double. Random weights, whose attention is near uniform, cannot show that
(their drift did not change), so the products are kept. ``benchmarks/int8_sensitivity.py`` sweeps
the quantisation layer group by layer group.

**Runtime** (:func:`int8_backend`): ONNX Runtime on every CPU. Measured on an AVX2-only AMD EPYC
(field notes): its dynamic int8 ran the so400m encoder 1.94x faster than OpenVINO float32, where
OpenVINO with NNCF static int8 gave 1.02x. ONNX Runtime has int8 kernels for VNNI and AMX CPUs too
(not measured here). NNCF is not offered: it needs calibration images of real faces, and no CPU
measured here gained from it.

**Records** (:func:`record_check`, :func:`precision_gate`): ``emonet-face check-precision`` scores
the user's photos in float32 and in int8 and stores the verdict in the conversion cache, in
``precision-checks/<graph id>.json`` beside the converted graphs, keyed by the int8 graph (its cache
entry encodes the encoder, its revision and files, the quantisation scheme and library versions), the
runtime (name and version) and the CPU (model name and the flags that decide its int8 kernels). A
later int8 load reads it: no record warns in one line naming the command to run, a failing record
refuses with its figures unless forced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import warnings
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from emonet_face.errors import InputError, ModelLoadError, require_extra
from emonet_face.runfolder import atomic_write_json, utc_timestamp

__all__ = [
    "FLOAT32_NODES",
    "cpu_identity",
    "float32_nodes",
    "int8_backend",
    "int8_scheme",
    "precision_gate",
    "quantize_int8",
    "read_check",
    "record_check",
    "record_file",
]

FLOAT32_NODES = ("/head/", "/heads/")
"""Name fragments of MatMul / Gemm nodes kept float32: SigLIP's attention-pooling head (``vision_model/head``)
and, in an exported one-graph model, the emotion heads (``heads``)."""
INT8_CPU_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "avx512_bf16")
"""The CPU flags that decide which int8 kernels ONNX Runtime runs: part of a record's key."""
RECORDS_DIR = "precision-checks"
RECORD_FORMAT = 1
CHECK_COMMAND = "emonet-face check-precision YOUR_PHOTOS --dtype int8"


# --- quantisation --------------------------------------------------------------------------------
def has_vnni() -> bool:
    """This CPU has int8 dot-product instructions (AVX512_VNNI, AVX_VNNI or AMX_INT8)."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu_identity()["flags"]))


def int8_scheme() -> dict[str, Any]:
    """What :func:`quantize_int8` does on this CPU, as data: part of the int8 graph's cache key (a new
    scheme is a new entry, and so needs a new check). Weights use the full 8-bit range on CPUs with
    VNNI/AMX and 7 bits elsewhere (``reduce_range``: the u8 x s8 kernels of CPUs without VNNI add
    pairs of products in 16 bits, which 8-bit weights can saturate; ONNX Runtime's quantisation guide)."""
    return {
        "method": "onnxruntime.quantize_dynamic",
        "op_types": ["MatMul"],
        "per_channel": True,
        "reduce_range": not has_vnni(),
        "weight_type": "QInt8",
        "float32_nodes": list(FLOAT32_NODES),
        "fusions": list(FUSIONS),
    }


def float32_nodes(graph: Any, keep: tuple[str, ...] = FLOAT32_NODES) -> list[str]:
    """Names of the ``MatMul`` and ``Gemm`` nodes of an ONNX ``graph`` (a ``ModelProto``) that stay
    float32. ``quantize_dynamic`` first replaces each ``Gemm`` (e.g. the pooling head's attention output)
    by a MatMul named ``<gemm>_MatMul``: both names are listed."""
    nodes = [n for n in graph.graph.node if n.op_type in ("MatMul", "Gemm") and any(k in n.name for k in keep)]
    return [name for n in nodes for name in ([n.name, f"{n.name}_MatMul"] if n.op_type == "Gemm" else [n.name])]


FUSIONS = ("gelu", "bias_gelu")
"""ONNX Runtime transformer-optimiser fusions applied before quantisation (:func:`fuse_gelu`)."""


def fuse_gelu(source: Path, target: Path) -> None:
    """Rewrite the float32 graph ``source`` into ``target`` with each MLP's bias add and tanh-GELU (eight
    elementwise nodes as the exporter writes ``gelu_pytorch_tanh``) as one ``FastGelu`` node, by ONNX
    Runtime's transformer optimiser with every other fusion off. Same formula in float32, one pass over
    the activations instead of eight: on the so400m int8 graph those nodes took 11 % of the encoder's
    time (ONNX Runtime profile, AVX2 EPYC), FastGelu takes 2 %. Nothing else of the graph changes."""
    fusion = require_extra(
        "onnxruntime.transformers.fusion_options", feature="--dtype int8", extra="onnx", package="onnxruntime", error=ModelLoadError
    )
    optimizer = require_extra(
        "onnxruntime.transformers.optimizer", feature="--dtype int8", extra="onnx", package="onnxruntime", error=ModelLoadError
    )
    options = fusion.FusionOptions("vit")
    for name in [n for n in vars(options) if n.startswith("enable_")]:
        setattr(options, name, name.removeprefix("enable_") in FUSIONS)
    logging.disable(logging.WARNING)  # "symbolic shape inference disabled": asked for, not a fault
    try:
        model = optimizer.optimize_model(
            str(source), model_type="vit", opt_level=0, optimization_options=options, use_gpu=False
        )
    finally:
        logging.disable(logging.NOTSET)
    model.save_model_to_file(str(target), use_external_data_format=True)


def quantize_int8(source: Path, target: Path, *, keep: tuple[str, ...] = FLOAT32_NODES) -> None:
    """ONNX Runtime dynamic quantisation of the float32 ONNX graph ``source`` into ``target``, with
    :func:`int8_scheme`.

    Only the MatMuls with constant weights are quantised (int8 weights, per output channel, 7-bit
    range without VNNI; activations quantised per call at run time): no calibration data is needed.
    MatMuls whose name holds one of ``keep`` stay float32 (see the module docstring), as do the patch
    embedding, layer norms, softmax and attention score products. The GELUs are fused first
    (:func:`fuse_gelu`), in a scratch file beside ``target``."""
    onnx = require_extra("onnx", feature="--dtype int8", extra="onnx", error=ModelLoadError, otherwise="or use --dtype float32")
    quantization = require_extra(
        "onnxruntime.quantization", feature="--dtype int8", extra="onnx", package="onnxruntime", error=ModelLoadError
    )
    QuantType, quantize_dynamic = quantization.QuantType, quantization.quantize_dynamic
    excluded = float32_nodes(onnx.load(str(source), load_external_data=False), keep)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fused-") as scratch:
        fused = Path(scratch) / source.name
        fuse_gelu(source, fused)
        logging.disable(logging.WARNING)  # its root-logger advice to pre-process (shape inference) is noise here
        try:
            quantize_dynamic(
                fused,
                target,
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                reduce_range=bool(int8_scheme()["reduce_range"]),
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                # FastGelu is a contrib op that ONNX shape inference does not type: its output is float32
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            logging.disable(logging.NOTSET)


def int8_backend(device: torch.device) -> str:
    """The runtime that runs ``--dtype int8`` under ``--backend auto``: ONNX Runtime on every CPU (see
    the module docstring for the measurements behind the rule); int8 on CUDA is refused."""
    if device.type != "cpu":
        raise InputError(f"--dtype int8 runs on the CPU; use --device cpu (or another --dtype on {device})")
    return "onnx"


# --- the CPU --------------------------------------------------------------------------------------
@cache
def cpu_identity() -> dict[str, Any]:
    """This CPU as a record key: model name, logical cores and the int8-relevant flags it has."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            field, _, value = line.partition(":")
            if field.strip() == "model name" and value.strip():
                name = value.strip()
            elif field.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return {"model": name, "cores": os.cpu_count(), "flags": [f for f in INT8_CPU_FLAGS if f in flags]}


def _runtime_identity(backend: str) -> str:
    package = "onnxruntime" if backend == "onnx" else backend
    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return package


# --- records ----------------------------------------------------------------------------------------
def record_file(root: Path, graph: Path) -> Path:
    """Where the checks of the int8 ``graph`` are recorded: ``<cache root>/precision-checks/<id>.json``,
    the id a hash of the graph's path, size and modification time (a rebuilt graph is a new id)."""
    stat = graph.stat()
    identity = json.dumps([str(graph.resolve()), stat.st_size, stat.st_mtime_ns])
    return root / RECORDS_DIR / f"{hashlib.sha256(identity.encode()).hexdigest()[:20]}.json"


def _record_key(precision: str, backend: str) -> str:
    cpu = cpu_identity()
    return json.dumps([precision, _runtime_identity(backend), cpu["model"], cpu["flags"]])


def _read_records(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("records", {}) if isinstance(data, dict) and data.get("format") == RECORD_FORMAT else {}


def record_check(root: Path, graph: Path, *, precision: str, backend: str, result: dict[str, Any]) -> Path:
    """Record a check-precision ``result`` (``passed``, ``summary`` and the figures) for ``graph`` on
    this runtime and CPU, replacing an earlier one; returns the record file (written atomically)."""
    path = record_file(root, graph)
    records = _read_records(path)
    cpu = cpu_identity()
    records[_record_key(precision, backend)] = {
        **result,
        "precision": precision,
        "runtime": _runtime_identity(backend),
        "cpu": cpu,
        "recorded": utc_timestamp(zulu=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"format": RECORD_FORMAT, "graph": str(graph), "records": records})
    return path


def read_check(root: Path, graph: Path, *, precision: str, backend: str) -> dict[str, Any] | None:
    """The recorded check of ``graph`` at ``precision`` on this runtime and CPU, if there is one."""
    try:
        path = record_file(root, graph)
    except OSError:
        return None
    return _read_records(path).get(_record_key(precision, backend))


def precision_gate(root: Path, graph: Path, *, name: str, backend: str, force: bool) -> None:
    """Before an int8 run: quiet with a passing record, one warning line without a record (naming
    the command that makes one), a one-line :class:`ModelLoadError` with the figures of a failing
    record (``force`` turns it into a warning)."""
    record = read_check(root, graph, precision="int8", backend=backend)
    if record is None:
        warnings.warn(
            f"--dtype int8: {name} has not been checked on this CPU; run `{CHECK_COMMAND}` with this run's "
            "model options to compare it with float32 on your own photos",
            stacklevel=4,
        )
        return
    if record.get("passed"):
        return
    figures = f"check-precision failed on {record.get('recorded', '?')}: {record.get('summary', 'no figures')}"
    if not force:
        raise ModelLoadError(
            f"--dtype int8: {name}: {figures}; use --dtype float32, rerun check-precision, or pass --force-precision"
        )
    warnings.warn(f"--dtype int8 forced (--force-precision): {name}: {figures}", stacklevel=4)
