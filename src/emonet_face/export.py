"""One-graph export: preprocessed pixels ``(N, 3, H, W)`` → ``embedding (N, D)``, ``raw (N, 44)``,
``centred (N, 44)``, ``probs (N, 40)``, with L2 normalisation and the neutral means inside, as ONNX
or OpenVINO IR, plus a ``config.json`` that says everything a runtime needs (head keys in order,
display names, preprocessing, sources, versions, licences).

:class:`ExportedGraph` runs such a folder (ONNX Runtime or OpenVINO) behind the encoder interface,
returning the embedding and the raw head outputs, so :class:`~emonet_face.pipeline.EmoNetFace`
builds exactly the table it builds from the source model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from emonet_face.backends import (
    INT8_WARNING,
    _library_versions,
    _Runtime,
    _Tower,
    convert_onnx,
    convert_openvino,
    pixel_size,
    quantize_int8,
)
from emonet_face.encoder import (
    EncoderCheckpoint,
    ImageEncoder,
    ImagePreprocessor,
    _load_image_processor,
    describe_encoder_run,
)
from emonet_face.errors import InputError, ModelLoadError
from emonet_face.heads import FusedHeads
from emonet_face.hub import MODELS

__all__ = ["EXPORT_FORMAT", "ExportedGraph", "export_model", "is_exported"]

EXPORT_FORMAT = "emonet-face-graph"
CONFIG_FILE = "config.json"
GRAPH_FILES = {"onnx": "model.onnx", "openvino": "model.xml"}
OUTPUTS = ("embedding", "raw", "centred", "probs")


class OneGraph(nn.Module):
    """Encoder tower + fused heads + neutral centring + softmax over the emotions, one module.

    The heads run their batched (stacked-matmul) path: the CPU inference path loops over heads,
    which would be unrolled into 44 sub-graphs by tracing.
    """

    def __init__(self, tower: nn.Module, heads: FusedHeads) -> None:
        super().__init__()
        self.tower = tower
        self.heads = heads.eval()
        self.register_buffer("neutral_mean", heads.neutral_mean.detach().float().clone())
        self.register_buffer("emotion_index", torch.tensor(heads.emotion_index, dtype=torch.long))

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embedding = self.tower(pixel_values)
        raw = self.heads._forward_chunk(embedding)
        centred = raw - self.neutral_mean
        probs = torch.softmax(centred.index_select(1, self.emotion_index), dim=-1)
        return embedding, raw, centred, probs


def is_exported(path: str | Path) -> bool:
    """True for a folder written by :func:`export_model`."""
    config = Path(path) / CONFIG_FILE
    try:
        return config.is_file() and json.loads(config.read_text()).get("format") == EXPORT_FORMAT
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False


def export_model(
    out: str | Path,
    *,
    encoder: str | Path | None = None,
    heads: str | Path | None = None,
    model: str = "large",
    fmt: str = "onnx",
    dtype: str = "float32",
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
) -> Path:
    """Export encoder + heads as one graph into the new folder ``out``; returns ``out``.

    ``encoder``/``heads`` default to the released ``model``'s; both accept Hub ids (``@revision``
    allowed) or local folders. ``fmt``: ``"onnx"`` (float32) or ``"openvino"`` (``dtype`` float32
    keeps float32 weights; float16 / bfloat16 store float16-compressed weights, half the size). The
    compute precision is chosen when the folder is run, as for the encoder backends (bf16 where the
    CPU has it natively, else float32; ``dtype="float32"`` forces exact float32). ``dtype="int8"``
    (``fmt="onnx"`` only) is EXPERIMENTAL: the float32 graph dynamically quantised by ONNX Runtime
    (:func:`~emonet_face.backends.quantize_int8`), run on ONNX Runtime, with a warning at every load.
    The folder is written beside ``out`` and renamed into place.
    """
    from emonet_face.pipeline import _split_revision, fetch_heads

    if fmt not in GRAPH_FILES:
        raise InputError(f"--format {fmt}: use onnx or openvino")
    if dtype not in ("float32", "float16", "bfloat16", "int8"):
        raise InputError(f"--dtype {dtype}: use float32, float16, bfloat16 or int8 (experimental)")
    if fmt == "onnx" and dtype not in ("float32", "int8"):
        raise InputError(
            f"--dtype {dtype}: ONNX Runtime has no fast reduced-precision CPU kernels; export --format openvino for {dtype}"
        )
    if fmt == "openvino" and dtype == "int8":
        raise InputError("--dtype int8 (experimental) is ONNX Runtime dynamic quantisation: use --format onnx")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not empty; choose a new --out folder")
    if model not in MODELS:
        raise InputError(f"{model}: unknown model; choose one of {', '.join(MODELS)}")
    spec = MODELS[model]
    enc_ref, enc_rev = _split_revision(encoder or spec.encoder, None)
    heads_ref, heads_rev = _split_revision(heads or spec.heads, revision)
    checkpoint = EncoderCheckpoint.resolve(
        enc_ref, revision=enc_rev, cache_dir=cache_dir, local_files_only=local_files_only
    )
    fused = fetch_heads(heads_ref, heads_rev, cache_dir=cache_dir, local_files_only=local_files_only)
    if checkpoint.dim != fused.in_dim:
        raise ModelLoadError(
            f"encoder {enc_ref} gives {checkpoint.dim}-dim features but the heads expect {fused.in_dim}"
        )
    processor = checkpoint.processor()
    graph = OneGraph(_Tower(checkpoint.load_vision_model(dtype=torch.float32), normalize=True), fused).eval()
    example = torch.zeros(1, 3, *pixel_size(processor))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        graph_path = tmp / GRAPH_FILES[fmt]
        if dtype == "int8":
            warnings.warn(INT8_WARNING, stacklevel=2)
            (tmp / "float32").mkdir()
            convert_onnx(graph, example, tmp / "float32" / graph_path.name, OUTPUTS)
            quantize_int8(tmp / "float32" / graph_path.name, graph_path)
            shutil.rmtree(tmp / "float32")
        elif fmt == "onnx":
            convert_onnx(graph, example, graph_path, OUTPUTS)
        else:
            convert_openvino(graph, example, graph_path, compress_to_fp16=dtype != "float32", outputs=OUTPUTS)
        processor.save_pretrained(str(tmp))  # preprocessor_config.json: the same PIL preprocessing
        config = _config(fmt, dtype, processor, fused, enc_ref, enc_rev, heads_ref, heads_rev, checkpoint.dim)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _config(
    fmt: str,
    dtype: str,
    processor: Any,
    heads: FusedHeads,
    enc_ref: Any,
    enc_rev: str | None,
    heads_ref: Any,
    heads_rev: str | None,
    dim: int,
) -> dict[str, Any]:
    from emonet_face.taxonomy import EMOTIONS, EXTRA_DIMENSIONS

    names = {item.key: item.name for item in (*EMOTIONS, *EXTRA_DIMENSIONS)}
    height, width = pixel_size(processor)
    spec = next((s for s in MODELS.values() if s.heads == str(heads_ref)), None)
    emotion_index = heads.emotion_index
    return {
        "format": EXPORT_FORMAT,
        "version": 1,
        "graph": {"format": fmt, "file": GRAPH_FILES[fmt], "precision": dtype}
        | ({"experimental": "int8 dynamic quantisation; drift on real weights unmeasured"} if dtype == "int8" else {}),
        "inputs": {"pixel_values": ["batch", 3, height, width]},
        "outputs": {
            "embedding": ["batch", dim],
            "raw": ["batch", len(heads.keys)],
            "centred": ["batch", len(heads.keys)],
            "probs": ["batch", len(emotion_index)],
        },
        "dim": dim,
        "head_keys": list(heads.keys),
        "display_names": {k: names.get(k, k) for k in heads.keys},
        "prob_keys": [heads.keys[i] for i in emotion_index],
        "neutral_mean": dict(zip(heads.keys, heads.neutral_mean.tolist())),
        "normalize": True,
        "preprocessing": {
            **ImageEncoder.describe_processor(processor),
            "size": {"height": height, "width": width},
            "rescale_factor": float(getattr(processor, "rescale_factor", 1 / 255)),
            "file": "preprocessor_config.json",
        },
        "sources": {
            "encoder": {"id": str(enc_ref), "revision": enc_rev},
            "heads": {"id": str(heads_ref), "revision": heads_rev},
        },
        "versions": _library_versions("openvino" if fmt == "openvino" else "onnx"),
        "license": spec.license if spec else "see the licences of the source encoder and heads",
        "license_notes": "Derived work of the source encoder and heads: their licences apply (released model: "
        "CC-BY-4.0 heads by LAION, Apache-2.0 SigLIP2 encoder by Google); emonet-face code: MIT.",
    }


class ExportedGraph:
    """An exported folder run by ONNX Runtime or OpenVINO, behind the encoder interface.

    ``graph(pixel_values)`` returns ``{"embedding", "raw"}`` tensors; the pipeline builds the table
    from ``raw`` with the folder's neutral means (so the table matches the source model's).
    """

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, folder: str | Path, *, backend: str = "auto", dtype: str | None = None) -> None:
        folder = Path(folder)
        if not is_exported(folder):
            raise ModelLoadError(f"{folder}: not an emonet-face export (no config.json with format {EXPORT_FORMAT!r})")
        config = json.loads((folder / CONFIG_FILE).read_text())
        try:
            graph = config["graph"]
            self.keys: tuple[str, ...] = tuple(config["head_keys"])
            self.neutral_mean = torch.tensor([float(config["neutral_mean"][k]) for k in self.keys])
            self.dim = int(config["dim"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{folder / CONFIG_FILE}: incomplete export config ({exc!r}); export again") from None
        self.folder = folder
        self.config = config
        stored = graph.get("precision", "float32")
        if stored == "int8" and backend in (None, "auto"):
            backend = "onnx"  # the int8 graph runs on ONNX Runtime only
        self.backend = _exported_backend(backend, graph["format"], folder)
        self.precision = _exported_precision(dtype, self.backend, stored)
        path = folder / graph["file"]
        if not path.is_file():
            raise ModelLoadError(f"{path}: graph file missing; export again")
        self.runtime = _Runtime(path, self.backend, self.precision)
        self.precision = self.runtime.precision
        self.processor = _load_image_processor(folder)
        self.preprocess = ImagePreprocessor(self.processor)
        self.normalize = bool(config.get("normalize", True))
        self.name = str(folder)
        self.revision = config.get("sources", {}).get("encoder", {}).get("revision")  # of the encoder inside

    def __call__(self, pixel_values: torch.Tensor, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        if extra:
            raise ModelLoadError(f"{self.folder}: the exported graph takes pixel_values only")
        out = self.runtime.run(pixel_values.detach().cpu().numpy())
        return {name: torch.from_numpy(out[name]) for name in ("embedding", "raw")}

    def outputs(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """All four graph outputs (``embedding``, ``raw``, ``centred``, ``probs``)."""
        out = self.runtime.run(pixel_values.detach().cpu().numpy())
        return {name: torch.from_numpy(out[name]) for name in OUTPUTS}

    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self(**self.preprocess(images))["embedding"]

    def describe(self) -> dict[str, Any]:
        sources = self.config.get("sources", {})
        return describe_encoder_run(
            self,
            backend=self.backend,
            precision=self.precision,
            device="cpu",
            encoder=sources.get("encoder", {}).get("id", ""),
            heads=sources.get("heads", {}).get("id", ""),
            exported=str(self.folder),
        )


def _exported_backend(backend: str | None, fmt: str, folder: Path) -> str:
    """ONNX files run on ONNX Runtime (or OpenVINO, which reads ONNX); IR files on OpenVINO only."""
    import importlib.util

    name = (backend or "auto").lower()
    if name == "auto":
        name = "onnx" if fmt == "onnx" and importlib.util.find_spec("onnxruntime") else "openvino"
    if name not in ("onnx", "openvino"):
        raise InputError(f"--backend {backend}: an exported folder runs on onnx or openvino (or auto)")
    if name == "onnx" and fmt != "onnx":
        raise InputError(f"{folder}: an OpenVINO export runs on --backend openvino only")
    module = "onnxruntime" if name == "onnx" else "openvino"
    if importlib.util.find_spec(module) is None:
        raise ModelLoadError(f"{folder}: the {module} package is not installed; pip install {module}")
    return name


def _exported_precision(dtype: str | None, backend: str, stored: str = "float32") -> str:
    """The runtime precision: ``auto`` as for the encoder backends; ``float32`` is exact. An int8
    export runs as int8 only (on ONNX Runtime), with the experimental warning."""
    from emonet_face.backends import PRECISIONS, cpu_has_bf16

    if stored == "int8":
        if dtype not in (None, "auto", "int8"):
            raise InputError(f"--dtype {dtype}: this folder holds an int8 (experimental) graph; use --dtype auto")
        if backend != "onnx":
            raise InputError("an int8 (experimental) export runs on ONNX Runtime only; use --backend onnx (or auto)")
        warnings.warn(INT8_WARNING, stacklevel=4)
        return "int8"
    if dtype in (None, "auto"):
        # float16-compressed weights are decompressed: compute in bf16 where native, else float32
        return "bfloat16" if backend == "openvino" and cpu_has_bf16() else "float32"
    precision = PRECISIONS.get(str(dtype).lower().removeprefix("torch."))
    if precision == "int8":
        raise InputError("--dtype int8: this folder holds a float32 graph; export one with --format onnx --dtype int8")
    if precision is None or (backend == "onnx" and precision != "float32"):
        raise InputError(f"--dtype {dtype}: use float32 (or bfloat16/float16 with --backend openvino)")
    return precision
