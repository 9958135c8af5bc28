"""Encoder backends: the same encoder interface on PyTorch, OpenVINO or ONNX Runtime.

:func:`load_encoder` is the one factory. ``backend="auto"``: PyTorch on CUDA, OpenVINO on CPU (a
core dependency: measured 1.6x faster than PyTorch in float32 and about 3x in bfloat16 on AVX-512
CPUs), PyTorch where a checkpoint cannot be converted (SigLIP2 NaFlex variable-resolution models);
precision as :func:`~emonet_face.runtime.device.resolve_precision` decides.

:class:`CompiledEncoder` gives the same encoder interface as the PyTorch
:class:`~emonet_face.runtime.encoder.ImageEncoder` (``preprocess``, ``__call__`` → L2-normalised
float32 features ``(N, D)``, ``dim``, ``describe()``) from the same checkpoint: the vision tower +
pooling + L2 normalisation become one graph with a dynamic batch axis, and the checkpoint's own PIL
image processor preprocesses, so both give the same features. Converted graphs are cached on disk
(see :func:`compiled_cache_dir`), so only the first start pays the conversion.
:class:`GraphRuntime` is the one wrapper around an OpenVINO or ONNX Runtime session, shared with the
exported one-graph models (:mod:`emonet_face.runtime.exported`).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from emonet_face.errors import EmoNetError, InputError, ModelLoadError, require_extra
from emonet_face.hub import DEFAULT_ENCODER
from emonet_face.runtime.base import Backend, BackendRequest, Encoded, Encoder, get_backend, register_backend
from emonet_face.runtime.device import (
    OV_PRECISION,
    asks_int8,
    resolve_backend,
    resolve_device,
    resolve_precision,
)
from emonet_face.runtime.encoder import EncoderCheckpoint, ImageEncoder, ImagePreprocessor, describe_encoder_run
from emonet_face.runtime.int8 import int8_backend, int8_scheme, precision_gate, quantize_int8, record_check

__all__ = [
    "CACHE_ENV",
    "CompiledEncoder",
    "GraphRuntime",
    "VisionTower",
    "cache_key",
    "cached_convert",
    "compiled_cache_dir",
    "convert_onnx",
    "convert_openvino",
    "differentiable_encoder",
    "library_versions",
    "load_encoder",
    "pixel_size",
    "quantize_int8",
    "record_precision_check",
]

CACHE_ENV = "EMONET_FACE_CACHE"
OV_HINT_ENV = "EMONET_FACE_OPENVINO_HINT"  # LATENCY (default: one request per batch) or THROUGHPUT (streams)
ORT_SPINNING_ENV = "EMONET_FACE_ORT_SPINNING"  # 0: ONNX Runtime's intra-op threads sleep between operators
CACHE_FORMAT = 1  # bump when the converted graph changes meaning


# --- the on-disk cache ---------------------------------------------------------------------------
def compiled_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where converted encoders live: ``$EMONET_FACE_CACHE``, else ``<cache_dir>/emonet-face`` when a
    (Hugging Face) cache folder is given, else ``~/.cache/emonet-face`` (``$XDG_CACHE_HOME``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if cache_dir is not None:
        return Path(cache_dir).expanduser() / "emonet-face"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "emonet-face"


def _fingerprint(folder: Path) -> list[list[Any]]:
    """Weights and configs by name, size and modification time: a changed file is a new cache entry."""
    files = sorted(p for p in folder.iterdir() if p.suffix in {".json", ".safetensors", ".bin"} and p.is_file())
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def library_versions(backend: str) -> dict[str, str | None]:
    """Versions of what wrote the graph (and of the runtime that reads it)."""
    from importlib.metadata import PackageNotFoundError, version

    packages = ["emonet-face", "torch", "transformers"]
    packages += ["openvino"] if backend == "openvino" else ["onnx", "onnxruntime"]
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def cache_key(folder: Path, *, name: str, revision: str | None, backend: str, normalize: bool) -> dict[str, Any]:
    """Everything that decides the converted graph (the entry name is its hash). The graph is stored
    in float32 with a dynamic batch axis; bf16/fp32 are compile-time choices of the runtime, so one
    entry serves both precisions. The int8 graph is its own entry (``stored_precision`` ``int8``
    and the quantisation scheme, :func:`~emonet_face.runtime.int8.int8_scheme`), quantised from the
    float32 one."""
    return {
        "format": CACHE_FORMAT,
        "encoder": name,
        "revision": revision,
        "folder": str(folder.resolve()),
        "files": _fingerprint(folder),
        "backend": backend,
        "stored_precision": "float32",
        "batch": "dynamic",
        "normalize": normalize,
        "versions": library_versions(backend),
    }


ENTRY_FILES = "files.json"
"""In a conversion cache entry: size, modification time and SHA-256 of each file the conversion wrote."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(8 * 1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _record_files(folder: Path) -> None:
    """Write :data:`ENTRY_FILES` for the files a conversion left in ``folder``."""
    records = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        stat = path.stat()
        records[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(path)}
    (folder / ENTRY_FILES).write_text(json.dumps(records, indent=2))


def _entry_damage(entry: Path) -> str | None:
    """What is wrong with the files of a conversion cache entry, or ``None``: a file missing, of another
    size, or with other bytes (hashed only when its size or time differ from the record, so an
    untouched entry costs a ``stat`` per file). An entry from before :data:`ENTRY_FILES` is not checked
    here (a graph that does not load is still rebuilt, see :func:`_load_compiled`)."""
    try:
        records = json.loads((entry / ENTRY_FILES).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return f"{ENTRY_FILES} unreadable: {exc}"
    for name, record in records.items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        stat = path.stat()
        if stat.st_size != record["size"]:
            return f"{name} holds {stat.st_size} bytes, {record['size']} were written"
        if stat.st_mtime_ns != record["mtime_ns"] and _sha256(path) != record["sha256"]:
            return f"{name} changed since it was written"
    return None


def _discard_entry(entry: Path, why: str) -> None:
    """Warn (one line) and delete a conversion cache entry that cannot be trusted; the caller rebuilds it."""
    warnings.warn(f"{entry}: damaged conversion cache entry ({why}); deleted, converting again", stacklevel=3)
    shutil.rmtree(entry, ignore_errors=True)


def cached_convert(root: Path, key: dict[str, Any], build: Callable[[Path], None]) -> tuple[Path, bool]:
    """The cache entry for ``key``, building it with ``build(tmp_dir)`` on a miss.

    Returns ``(folder, hit)``. The entry is built in a temporary folder beside it and renamed into
    place, so a killed conversion leaves no half-written entry (only a ``.tmp-*`` folder, removed by
    the next build that finds it older than a day); ``key.json``, written last, marks it complete and
    :data:`ENTRY_FILES` records its files. An entry whose files changed since (cut short, overwritten:
    :func:`_entry_damage`) is deleted with a warning and built again.
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    entry = root / f"{key['backend']}-{digest}"
    if (entry / "key.json").is_file():
        damage = _entry_damage(entry)
        if damage is None:
            return entry, True
        _discard_entry(entry, damage)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        if time.time() - stale.stat().st_mtime > 86400:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        build(tmp)
        _record_files(tmp)
        (tmp / "key.json").write_text(json.dumps(key, indent=2))  # written last: marks a complete entry
        try:
            os.replace(tmp, entry)
        except OSError:  # another process finished the same entry first: use theirs
            if not (entry / "key.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry, False


# --- conversion ----------------------------------------------------------------------------------
class VisionTower(torch.nn.Module):
    """Pixels → pooled (optionally L2-normalised) features: exactly :meth:`ImageEncoder.forward`."""

    def __init__(self, vision_model: torch.nn.Module, normalize: bool) -> None:
        super().__init__()
        self.vision_model = vision_model
        self.normalize = normalize

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.vision_model(pixel_values=pixel_values).pooler_output
        return torch.nn.functional.normalize(features, dim=-1) if self.normalize else features


def convert_openvino(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    compress_to_fp16: bool = False,
    outputs: Sequence[str] = ("embedding",),
) -> None:
    """``module(example)`` → an OpenVINO IR (``.xml`` + ``.bin``) with a dynamic batch axis and named outputs."""
    import openvino as ov

    shape = [-1, *example.shape[1:]]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks that are constant here
        model = ov.convert_model(module.eval(), example_input=(example,), input=[(ov.PartialShape(shape), ov.Type.f32)])
    model.inputs[0].get_tensor().set_names({"pixel_values"})
    for port, name in zip(model.outputs, outputs):
        port.get_tensor().set_names({name})
    ov.save_model(model, str(path), compress_to_fp16=compress_to_fp16)


def convert_onnx(module: torch.nn.Module, example: torch.Tensor, path: Path, output_names: Sequence[str]) -> None:
    """``module(example)`` → an ONNX graph with a dynamic batch axis (weights as external data)."""
    # before torch.onnx.export, which would end in OnnxExporterError's traceback
    require_extra("onnx", feature="converting to ONNX", extra="onnx", error=ModelLoadError)
    names = ["pixel_values", *output_names]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=names[:1],
            output_names=names[1:],
            dynamic_axes={name: {0: "batch"} for name in names},
            opset_version=17,
            dynamo=False,
            external_data=True,
        )


# --- runtimes ------------------------------------------------------------------------------------
class _stack_t(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def _keep_signal_stack() -> Iterator[None]:
    """Give the calling thread its alternate signal stack back after OpenVINO compiles a model.

    OpenVINO's CPU plugin installs an alternate signal stack of its own while compiling and puts the
    previous one back when the compiled model is destroyed. Two compiled models destroyed in the
    order they were made leave the thread pointing at the first one's freed stack, and the next
    Python signal handler (e.g. PyTorch DataLoader's SIGCHLD) then kills the process with SIGSEGV
    (measured here: OpenVINO 2026.4). Restoring the previous stack at once keeps every later
    restore valid; OpenVINO's handlers still get a valid (the previous) stack."""
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    previous = _stack_t()
    saved = libc.sigaltstack(None, ctypes.byref(previous)) == 0
    try:
        yield
    finally:
        if saved:
            libc.sigaltstack(ctypes.byref(previous), None)


OV_CAPABILITY = {"bfloat16": "BF16", "float16": "FP16"}
"""Our precision names → the OpenVINO CPU capability that says it is native."""


def _say_openvino_precision(asked: str, runs: str, capabilities: Sequence[str]) -> None:
    """Warn where OpenVINO does not compute what was asked: it drops a bf16/f16 hint the CPU has no
    kernels for (an AVX2-only CPU runs float32) and emulates bf16 on AVX-512 CPUs without
    AVX512_BF16/AMX (its capabilities then lack ``BF16``)."""
    listed = ", ".join(capabilities)
    if runs != asked:
        warnings.warn(
            f"{asked}: OpenVINO has no {asked} on this CPU (capabilities {listed}) and runs {runs} instead; "
            f"the scores are {runs} (and say so); --dtype {runs} asks for that without this warning",
            stacklevel=4,
        )
    elif OV_CAPABILITY.get(asked) not in capabilities:
        warnings.warn(
            f"{asked}: OpenVINO emulates it on this CPU (no {OV_CAPABILITY.get(asked)} among its capabilities "
            f"{listed}): slower and less precise than float32",
            stacklevel=4,
        )


def _onnx_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session: one intra-op thread per core PyTorch counts (its default is the
    physical cores), every graph optimisation (the int8 graph's quantise + integer MatMul pairs are
    fused into one kernel each). Its intra-op threads spin between operators (ONNX Runtime's default;
    ``$EMONET_FACE_ORT_SPINNING=0`` makes them sleep): measured on 2 AVX2 cores, so400m int8 at batch 8,
    sleeping threads ran 2.65 s/image against 2.18 spinning, since the int8 graph has many small
    operators (quantise, integer MatMul, rescale) where each wake-up costs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", os.environ.get(ORT_SPINNING_ENV, "1"))
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class GraphRuntime:
    """A compiled graph on OpenVINO or ONNX Runtime: ``run(pixels) -> {output name: array}``."""

    def __init__(
        self, path: Path, backend: str, precision: str, *, threads: int | None = None, blob_cache: Path | None = None
    ) -> None:
        self.backend = backend
        self.precision = precision
        """What the runtime computes in (OpenVINO reports it: a hint the CPU cannot honour is dropped)."""
        threads = threads or torch.get_num_threads()
        if backend == "openvino":
            import openvino as ov

            hint = os.environ.get(OV_HINT_ENV, "LATENCY").upper()
            if hint not in ("THROUGHPUT", "LATENCY"):
                raise InputError(f"${OV_HINT_ENV}={hint}: use THROUGHPUT or LATENCY")
            config = {
                "INFERENCE_PRECISION_HINT": OV_PRECISION[precision],  # OpenVINO would pick bf16 by itself
                "PERFORMANCE_HINT": hint,
                "INFERENCE_NUM_THREADS": threads,
            }
            if blob_cache is not None:  # compiled blobs: a faster second start
                # one folder per precision: OpenVINO 2026.4 reuses an f32 blob for a later bf16 compile
                # of the same graph in one process and returns NaN (measured on an AMX CPU)
                config["CACHE_DIR"] = str(blob_cache / precision)
            core = ov.Core()
            with _keep_signal_stack():
                self._compiled = core.compile_model(str(path), "CPU", config)
                self.streams = int(self._compiled.get_property("NUM_STREAMS"))
                self._queue = ov.AsyncInferQueue(self._compiled, self.streams)
            actual = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
            self.precision = {name: p for p, name in OV_PRECISION.items()}.get(actual, precision)
            if precision != "float32":
                _say_openvino_precision(precision, self.precision, core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
            self.output_names = [o.get_any_name() for o in self._compiled.outputs]
        else:
            self._session = _onnx_session(path, threads)
            self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if self.backend == "openvino":
            return self._run_streams(pixels)
        return dict(zip(self.output_names, self._session.run(None, {"pixel_values": pixels})))

    def _run_streams(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """The batch split over OpenVINO's streams, run in parallel (one request per stream).

        LATENCY (the default) compiles one stream with all threads: one request per batch. THROUGHPUT
        (``$EMONET_FACE_OPENVINO_HINT``) gives each stream its share of the threads, so a batch is split
        into one chunk per stream; a batch smaller than the stream count leaves streams idle. Measured
        on 2 cores (so400m f32, benchmarks/bench_openvino_tuning.py): THROUGHPUT 1.0-1.13x LATENCY at
        batch 8 (within the noise of a shared machine) and 0.55x at batch 1, hence LATENCY by default;
        on many-core CPUs THROUGHPUT may pay off (not measured here).
        """
        chunks = np.array_split(pixels, max(1, min(len(pixels), self.streams)))
        results: list[list[np.ndarray]] = [[] for _ in chunks]

        def done(request: Any, index: int) -> None:  # copies: the request's tensors are reused
            results[index] = [np.array(request.get_output_tensor(i).data) for i in range(len(self.output_names))]

        self._queue.set_callback(done)
        for index, chunk in enumerate(chunks):
            self._queue.start_async({0: chunk}, index)
        self._queue.wait_all()
        return {name: np.concatenate([r[i] for r in results]) for i, name in enumerate(self.output_names)}


class CompiledEncoder:
    """The SigLIP vision tower compiled for OpenVINO or ONNX Runtime, behind the encoder interface.

    Build it with :func:`~emonet_face.runtime.load_encoder`. Same preprocessing (the checkpoint's PIL processor) and the
    same L2-normalised float32 features as :class:`~emonet_face.runtime.encoder.ImageEncoder`.
    """

    device = torch.device("cpu")
    dtype = torch.float32  # of the features it returns
    graph_heads = None

    def __init__(
        self,
        runtime: GraphRuntime,
        processor: Any,
        *,
        dim: int,
        precision: str,
        normalize: bool = True,
        name: str = "",
        revision: str | None = None,
        cache_entry: Path | None = None,
        cache_hit: bool = False,
        patch_size: int | None = None,
        compiled_dir: Path | None = None,
    ) -> None:
        self.runtime = runtime
        self.compiled_dir = compiled_dir
        """The conversion cache's root: where check-precision records live (:mod:`~emonet_face.runtime.int8`)."""
        self.patch_size = patch_size
        """Patch side in pixels (explanation maps are drawn over the patch grid)."""
        self.processor = processor
        self.preprocess = ImagePreprocessor(processor)  # picklable: workers never see the runtime
        self.dim = dim
        self.precision = runtime.precision
        self.normalize = normalize
        self.name = name
        self.revision = revision
        self.cache_entry = cache_entry
        self.cache_hit = cache_hit

    @property
    def backend(self) -> str:
        return self.runtime.backend

    def __call__(self, pixel_values: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        """Features ``(N, D)`` float32 for preprocessed pixels ``(N, 3, H, W)``."""
        if extra:
            raise ModelLoadError(f"the {self.backend} encoder takes pixel_values only (got {', '.join(extra)})")
        out = self.runtime.run(pixel_values.detach().cpu().numpy())
        return torch.from_numpy(next(iter(out.values())))

    def encode(self, batch: Mapping[str, torch.Tensor]) -> Encoded:
        return Encoded(self(**batch))

    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self(**self.preprocess(images))

    def describe(self) -> dict[str, Any]:
        return describe_encoder_run(self, backend=self.backend, precision=self.precision, device="cpu")


def load_encoder(
    ref: str | Path = DEFAULT_ENCODER,
    *,
    backend: str = "auto",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    normalize: bool = True,
    compiled_dir: str | Path | None = None,
    converted: str | Path | None = None,
    force_precision: bool = False,
) -> Encoder:
    """Load a SigLIP/SigLIP2 image encoder on the fastest available backend.

    Args:
        ref: encoder Hub id (``owner/name``) or local checkpoint folder.
        backend: ``"auto"`` (PyTorch on CUDA, OpenVINO on CPU, PyTorch where a checkpoint has extra
            inputs such as SigLIP2 NaFlex), ``"torch"``, ``"openvino"``, ``"onnx"`` (ONNX Runtime), or
            any name registered with :func:`~emonet_face.runtime.base.register_backend`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default CUDA when available. OpenVINO and ONNX
            Runtime run on the CPU.
        dtype: ``None``/``"auto"`` (bfloat16 on CPUs with AVX512_BF16/AMX and on bf16 GPUs, float32
            elsewhere; ONNX Runtime float32), ``"float32"`` (exact float32 everywhere, also forcing
            OpenVINO's ``INFERENCE_PRECISION_HINT``), ``"bfloat16"``, ``"float16"``, or ``"int8"``
            (CPU only, never chosen by ``auto``: ONNX Runtime dynamic quantisation, see
            :mod:`~emonet_face.runtime.int8`; ``backend="auto"`` then means the int8 runtime for this
            CPU). An int8 load reads this CPU's ``check-precision`` record: none warns, a failing one
            refuses (:class:`ModelLoadError`) unless ``force_precision``.
        revision: Hub revision of the encoder.
        cache_dir: Hugging Face cache folder (also hosts converted models when ``$EMONET_FACE_CACHE``
            is unset).
        local_files_only: serve the Hub cache only.
        normalize: L2-normalise features (inside the converted graph for OpenVINO / ONNX Runtime).
        compiled_dir: where converted models are cached (default :func:`compiled_cache_dir`).
        converted: an OpenVINO IR of this checkpoint's tower converted ahead of time (L2 normalisation
            inside, as :func:`convert_openvino` writes it; a bundle's ``openvino/encoder.xml``): used
            instead of the conversion cache when the backend is OpenVINO with ``normalize`` on; or an
            int8 ONNX graph (a bundle's ``onnx-int8/encoder.onnx``) used for ``dtype="int8"``.
        force_precision: run int8 even where this CPU's check-precision record failed (warns).

    Returns:
        The encoder, an ImageEncoder (PyTorch) or a CompiledEncoder (OpenVINO, ONNX Runtime), both
        :class:`~emonet_face.runtime.base.Encoder`; ``describe()`` names backend, precision and device.

    Raises:
        ModelLoadError: missing weights, a non-SigLIP checkpoint, an absent runtime package, or a
            checkpoint the requested backend cannot convert.
        InputError: unknown backend or dtype, or a CPU-only backend asked for CUDA.
    """
    dev = resolve_device(device)
    checkpoint = EncoderCheckpoint.resolve(ref, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    if asks_int8(dtype) and (backend or "auto").lower() == "auto":
        backend = int8_backend(dev)  # the int8 runtime for this CPU (auto itself never picks int8)
    name = resolve_backend(backend, dev)
    if checkpoint.takes_extra_inputs and not get_backend(name).takes_extra_inputs:
        if backend != "auto":
            raise ModelLoadError(
                f"{ref}: SigLIP2 NaFlex checkpoints take extra inputs the {name} backend does not convert; "
                "use --backend torch"
            )
        name = "torch"
    request = BackendRequest(
        ref=str(ref),
        checkpoint=checkpoint,
        processor=checkpoint.processor(),
        device=dev,
        precision=resolve_precision(dtype, dev, name),
        revision=revision,
        normalize=normalize,
        compiled_dir=Path(compiled_dir) if compiled_dir else compiled_cache_dir(cache_dir),
        converted=Path(converted) if converted is not None else None,
    )
    encoder = get_backend(name).load(request)
    if request.precision == "int8" and isinstance(encoder, CompiledEncoder) and encoder.cache_entry is not None:
        graph = int8_graph(encoder.cache_entry)
        precision_gate(request.compiled_dir, graph, name=str(ref), backend=name, force=force_precision)
    return encoder


def int8_graph(entry: Path) -> Path:
    """The int8 graph file of a cache entry (or of a bundle's ``onnx-int8`` folder)."""
    return entry / "encoder.onnx"


def record_precision_check(encoder: Encoder, result: dict[str, Any]) -> Path | None:
    """Record a check-precision verdict for ``encoder`` when it is an int8 graph from the conversion
    cache or a bundle (:func:`~emonet_face.runtime.int8.record_check`); returns the record file, or
    ``None`` for encoders whose precision needs no record (float32, bfloat16, exported folders)."""
    if not isinstance(encoder, CompiledEncoder) or encoder.precision != "int8":
        return None
    if encoder.cache_entry is None or encoder.compiled_dir is None:
        return None
    return record_check(
        encoder.compiled_dir, int8_graph(encoder.cache_entry), precision="int8", backend=encoder.backend, result=result
    )


def differentiable_encoder(
    encoder: Encoder,
    *,
    device: torch.device,
    dtype: str | torch.dtype | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
) -> ImageEncoder:
    """The PyTorch encoder that gradient methods differentiate: ``encoder`` itself when it is one, else
    a PyTorch copy of the same checkpoint at the precision ``encoder`` computes in (OpenVINO runs
    float32 for a bfloat16 request on a CPU without bf16: the copy does too, and the maps say what the
    scores say; int8 runs get a copy at ``auto`` precision). An exported folder has no checkpoint to
    copy: a one-line error says to use occlusion."""
    if isinstance(encoder, ImageEncoder):
        return encoder
    if encoder.graph_heads is not None:
        raise ModelLoadError(
            f"{encoder.name}: an exported folder has no PyTorch encoder for gradients; use --method occlusion"
        )
    runs = encoder.describe().get("precision") or dtype
    twin = load_encoder(
        encoder.name,
        backend="torch",
        device=device,
        dtype=None if str(runs) == "int8" else runs,
        revision=encoder.revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        normalize=encoder.normalize,
    )
    assert isinstance(twin, ImageEncoder)
    return twin


def _load_torch(request: BackendRequest) -> ImageEncoder:
    """The PyTorch vision tower at the requested precision, on the requested device."""
    model = request.checkpoint.load_vision_model(dtype=getattr(torch, request.precision))
    encoder = ImageEncoder(
        model, request.processor, normalize=request.normalize, name=request.ref, revision=request.revision
    )
    return encoder.to(request.device)


def _converted_graph(request: BackendRequest, backend: str) -> tuple[Path, Path, bool, Path | None]:
    """The tower converted for ``backend`` (from the conversion cache, built on a miss; or a graph
    converted ahead of time): ``(graph file, cache entry, cache hit, OpenVINO blob cache)``."""
    graph_file = "encoder.xml" if backend == "openvino" else "encoder.onnx"
    key = cache_key(
        request.checkpoint.folder, name=request.ref, revision=request.revision, backend=backend,
        normalize=request.normalize,
    )

    def convert(tmp: Path) -> None:
        tower = VisionTower(request.checkpoint.load_vision_model(dtype=torch.float32), request.normalize)
        example = torch.zeros(1, 3, *pixel_size(request.processor))
        if backend == "openvino":
            convert_openvino(tower, example, tmp / graph_file)
        else:
            convert_onnx(tower, example, tmp / graph_file, ["embedding"])

    def quantize(tmp: Path) -> None:
        float32, _ = cached_convert(request.compiled_dir, key, convert)
        quantize_int8(float32 / graph_file, tmp / graph_file)

    if request.converted is not None and backend == "openvino" and request.normalize:
        if not request.converted.is_file():
            raise ModelLoadError(f"{request.converted}: converted encoder graph not found")
        blobs = _blob_cache(request.compiled_dir, request.converted)
        return request.converted, request.converted.parent, True, blobs
    if request.precision == "int8" and request.converted is not None and request.converted.suffix == ".onnx":
        if not request.converted.is_file():
            raise ModelLoadError(f"{request.converted}: int8 encoder graph not found")
        return request.converted, request.converted.parent, True, None
    if request.precision == "int8":
        int8_key = {**key, "stored_precision": "int8", "quantisation": int8_scheme()}
        entry, hit = cached_convert(request.compiled_dir, int8_key, quantize)
    else:
        entry, hit = cached_convert(request.compiled_dir, key, convert)
    return entry / graph_file, entry, hit, entry / "ov-blobs"


def _load_compiled(backend: str) -> Callable[[BackendRequest], CompiledEncoder]:
    """The loader of a compiled backend (OpenVINO or ONNX Runtime): convert once, then run the graph."""

    def load(request: BackendRequest) -> CompiledEncoder:
        graph, entry, hit, blobs = _converted_graph(request, backend)
        try:
            runtime = GraphRuntime(graph, backend, request.precision, blob_cache=blobs)
        except EmoNetError:
            raise
        except Exception as exc:  # a cached graph of ours the runtime cannot read: build it again, once
            if not hit or request.converted is not None:
                raise
            _discard_entry(entry, f"{graph.name} does not load: {(str(exc).strip().splitlines() or [repr(exc)])[0]}")
            graph, entry, hit, blobs = _converted_graph(request, backend)
            runtime = GraphRuntime(graph, backend, request.precision, blob_cache=blobs)
        return CompiledEncoder(
            runtime,
            request.processor,
            dim=request.checkpoint.dim,
            precision=request.precision,
            normalize=request.normalize,
            name=request.ref,
            revision=request.revision,
            cache_entry=entry,
            cache_hit=hit,
            patch_size=request.checkpoint.vision_config.get("patch_size"),
            compiled_dir=request.compiled_dir,
        )

    return load


register_backend(Backend("torch", _load_torch, takes_extra_inputs=True))
register_backend(Backend("openvino", _load_compiled("openvino"), module="openvino", cpu_only=True))
register_backend(
    Backend(
        "onnx", _load_compiled("onnx"), module="onnxruntime", install_hint="pip install 'emonet-face[onnx]'",
        cpu_only=True,
    )
)


def _blob_cache(root: Path, graph: Path) -> Path | None:
    """OpenVINO's compiled-blob cache for a graph converted elsewhere (a bundle, maybe read-only): in our
    cache folder, keyed by the graph's path, size and time; ``None`` (no blob cache) if it is not writable."""
    stat = graph.stat()
    key = json.dumps([str(graph.resolve()), stat.st_size, stat.st_mtime_ns, library_versions("openvino")])
    folder = root / f"ov-blobs-{hashlib.sha256(key.encode()).hexdigest()[:20]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


def pixel_size(processor: Any) -> tuple[int, int]:
    """(height, width) the processor resizes to."""
    size = getattr(processor, "size", None) or {}
    get = size.get if hasattr(size, "get") else lambda k: getattr(size, k, None)
    height, width = get("height"), get("width")
    if not height or not width:
        edge = get("shortest_edge") or 384
        height = width = edge
    return int(height), int(width)
