"""Running a folder written by ``emonet-face export``: one graph (ONNX or OpenVINO IR) that maps
preprocessed pixels to ``embedding``, ``raw``, ``centred`` and ``probs``, plus a ``config.json`` that
says everything a runtime needs (head keys in order, neutral means, preprocessing, sources).

:class:`ExportedGraph` runs such a folder behind the encoder interface, returning the embedding and
the raw head outputs, so :class:`~emonet_face.pipeline.EmoNetFace` builds exactly the table it builds
from the source model. Writing such a folder is :func:`emonet_face.export.export_model`.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from emonet_face.errors import InputError, ModelLoadError
from emonet_face.runtime.backends import GraphRuntime
from emonet_face.runtime.base import Encoded, GraphHeads
from emonet_face.runtime.device import PRECISIONS, cpu_has_bf16
from emonet_face.runtime.encoder import ImagePreprocessor, describe_encoder_run, load_image_processor

__all__ = ["CONFIG_FILE", "EXPORT_FORMAT", "GRAPH_FILES", "OUTPUTS", "ExportedGraph", "is_exported"]

EXPORT_FORMAT = "emonet-face-graph"
CONFIG_FILE = "config.json"
GRAPH_FILES = {"onnx": "model.onnx", "openvino": "model.xml"}
OUTPUTS = ("embedding", "raw", "centred", "probs")


def is_exported(path: str | Path) -> bool:
    """True for a folder written by :func:`export_model`."""
    config = Path(path) / CONFIG_FILE
    try:
        return config.is_file() and json.loads(config.read_text()).get("format") == EXPORT_FORMAT
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False



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
            self.graph_heads = GraphHeads(self.keys, self.neutral_mean)
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
        self.runtime = GraphRuntime(path, self.backend, self.precision)
        self.precision = self.runtime.precision
        self.processor = load_image_processor(folder)
        self.preprocess = ImagePreprocessor(self.processor)
        self.normalize = bool(config.get("normalize", True))
        self.name = str(folder)
        self.revision = config.get("sources", {}).get("encoder", {}).get("revision")  # of the encoder inside

    def __call__(self, pixel_values: torch.Tensor, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        if extra:
            raise ModelLoadError(f"{self.folder}: the exported graph takes pixel_values only")
        out = self.runtime.run(pixel_values.detach().cpu().numpy())
        return {name: torch.from_numpy(out[name]) for name in ("embedding", "raw")}

    def encode(self, batch: Mapping[str, torch.Tensor]) -> Encoded:
        """Features and the raw head outputs the graph computed (the encoder interface's call)."""
        out = self(**batch)
        return Encoded(out["embedding"], out["raw"])

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
    export runs as int8 only (on ONNX Runtime), with a one-line warning: the folder has no float32
    graph to check it against, so the check is made on the source model."""
    if stored == "int8":
        if dtype not in (None, "auto", "int8"):
            raise InputError(f"--dtype {dtype}: this folder holds an int8 graph; use --dtype auto (or int8)")
        if backend != "onnx":
            raise InputError("an int8 export runs on ONNX Runtime only; use --backend onnx (or auto)")
        warnings.warn(
            "this folder holds an int8 graph, which check-precision cannot compare with float32 by itself: check the "
            "source model with `emonet-face check-precision YOUR_PHOTOS --dtype int8 --encoder ... --heads ...`",
            stacklevel=4,
        )
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
