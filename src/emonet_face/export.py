"""One-graph export: preprocessed pixels ``(N, 3, H, W)`` → ``embedding (N, D)``, ``raw (N, 44)``,
``centred (N, 44)``, ``probs (N, 40)``, with L2 normalisation and the neutral means inside, as ONNX
or OpenVINO IR, plus a ``config.json`` that says everything a runtime needs (head keys in order,
display names, preprocessing, sources, versions, licences).

:class:`~emonet_face.runtime.exported.ExportedGraph` runs such a folder (``predict --model DIR``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emonet_face.errors import InputError, ModelLoadError, require_extra
from emonet_face.heads import FusedHeads
from emonet_face.hub import MODELS, fetch_heads, release_refs
from emonet_face.runfolder import refuse_if_in_use, require_new_folder, staged_folder
from emonet_face.runtime.backends import VisionTower, convert_onnx, convert_openvino, library_versions, pixel_size
from emonet_face.runtime.encoder import EncoderCheckpoint, ImageEncoder
from emonet_face.runtime.exported import CONFIG_FILE, EXPORT_FORMAT, GRAPH_FILES, OUTPUTS, ExportedGraph, is_exported
from emonet_face.runtime.int8 import int8_scheme, quantize_int8
from emonet_face.taxonomy import EMOTIONS, EXTRA_DIMENSIONS, Emotion, ExtraDimension

__all__ = ["EXPORT_FORMAT", "ExportedGraph", "export_model", "is_exported"]



class OneGraph(nn.Module):
    """Encoder tower + fused heads + neutral centring + softmax over the emotions, one module.

    The heads run their batched (stacked-matmul) path: the CPU inference path loops over heads,
    which would be unrolled into 44 sub-graphs by tracing.
    """

    neutral_mean: torch.Tensor  # registered buffers
    emotion_index: torch.Tensor

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
    (``fmt="onnx"`` only): the float32 graph dynamically quantised by ONNX Runtime
    (:func:`~emonet_face.runtime.int8.quantize_int8`; the emotion heads and the pooling head stay
    float32), run on ONNX Runtime; check the source model with ``check-precision`` first.
    The folder is written beside ``out`` and renamed into place.
    """
    if fmt not in GRAPH_FILES:
        raise InputError(f"--format {fmt}: use onnx or openvino")
    if dtype not in ("float32", "float16", "bfloat16", "int8"):
        raise InputError(f"--dtype {dtype}: use float32, float16, bfloat16 or int8")
    if fmt == "onnx" and dtype not in ("float32", "int8"):
        raise InputError(
            f"--dtype {dtype}: ONNX Runtime has no fast reduced-precision CPU kernels; export --format openvino for {dtype}"
        )
    if fmt == "openvino" and dtype == "int8":
        raise InputError("--dtype int8 is ONNX Runtime dynamic quantisation: use --format onnx")
    if fmt == "onnx":  # before loading a model that cannot be exported
        require_extra("onnx", feature="--format onnx", extra="onnx", error=InputError, otherwise="or export --format openvino")
    out = require_new_folder(out)
    refuse_if_in_use(out)  # before the model loads; staged_folder holds out while it is built
    enc_ref, enc_rev, heads_ref, heads_rev = release_refs(model, encoder, heads, revision)
    checkpoint = EncoderCheckpoint.resolve(
        enc_ref, revision=enc_rev, cache_dir=cache_dir, local_files_only=local_files_only
    )
    fused = fetch_heads(heads_ref, heads_rev, cache_dir=cache_dir, local_files_only=local_files_only)
    if checkpoint.dim != fused.in_dim:
        raise ModelLoadError(
            f"encoder {enc_ref} gives {checkpoint.dim}-dim features but the heads expect {fused.in_dim}"
        )
    processor = checkpoint.processor()
    graph = OneGraph(VisionTower(checkpoint.load_vision_model(dtype=torch.float32), normalize=True), fused).eval()
    example = torch.zeros(1, 3, *pixel_size(processor))

    with staged_folder(out) as tmp:  # built beside out, renamed into place; out is claimed meanwhile
        graph_path = tmp / GRAPH_FILES[fmt]
        if dtype == "int8":
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
    items: tuple[Emotion | ExtraDimension, ...] = (*EMOTIONS, *EXTRA_DIMENSIONS)
    names = {item.key: item.name for item in items}
    height, width = pixel_size(processor)
    spec = next((s for s in MODELS.values() if s.heads == str(heads_ref)), None)
    emotion_index = heads.emotion_index
    return {
        "format": EXPORT_FORMAT,
        "version": 1,
        "graph": {"format": fmt, "file": GRAPH_FILES[fmt], "precision": dtype}
        | ({"quantisation": int8_scheme()} if dtype == "int8" else {}),
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
        "versions": library_versions("openvino" if fmt == "openvino" else "onnx"),
        "license": spec.license if spec else "see the licences of the source encoder and heads",
        "license_notes": "Derived work of the source encoder and heads: their licences apply (released model: "
        "CC-BY-4.0 heads by LAION, Apache-2.0 SigLIP2 encoder by Google); emonet-face code: MIT.",
    }
