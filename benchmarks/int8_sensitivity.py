"""Per-layer int8 sensitivity of a SigLIP vision tower: which MatMul groups hurt most when quantised.

Each group of MatMuls with constant weights (per encoder layer: the q/k/v projections, the attention
output projection, the MLP's fc1 and fc2; the attention-pooling head's MLP) is quantised ALONE with
the scheme of ``emonet_face.runtime.int8`` (ONNX Runtime dynamic, per-channel int8 weights, 7-bit),
everything else float32; then the scheme itself (everything but ``FLOAT32_NODES``) and everything.
The features of ``--images`` (or random pixels) are compared with the float32 graph's: 1 - min cosine
and max |delta|. A group far above the others is a candidate for ``FLOAT32_NODES``.

    PYTHONPATH=src python benchmarks/int8_sensitivity.py --encoder /path/to/siglip [--images DIR] [--n 8]

Random weights have no activation outliers: only a real checkpoint says which layers are sensitive.
"""

from __future__ import annotations

import argparse
import logging
import re
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
from PIL import Image

from emonet_face.runtime import load_encoder
from emonet_face.runtime.int8 import FLOAT32_NODES, int8_scheme

GROUP = re.compile(r"(layers\.\d+/(?:self_attn/(?:[qkv]_proj|out_proj)|mlp/fc[12])|head/mlp/fc[12])/MatMul$")


def groups(graph: onnx.ModelProto) -> dict[str, list[str]]:
    """Constant-weight MatMuls by group (q/k/v projections of a layer together)."""
    constants = {init.name for init in graph.graph.initializer}
    found: dict[str, list[str]] = defaultdict(list)
    for node in graph.graph.node:
        match = GROUP.search(node.name)
        if node.op_type == "MatMul" and match and any(i in constants for i in node.input):
            found[re.sub(r"[qkv]_proj", "qkv_proj", match.group(1))].append(node.name)
    return dict(found)


def features(path: Path, pixels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"pixel_values": pixels})[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, help="SigLIP checkpoint folder or Hub id")
    parser.add_argument("--images", type=Path, help="folder of images (default: random pixels)")
    parser.add_argument("--n", type=int, default=8, help="images")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = load_encoder(args.encoder, backend="onnx", dtype="float32", device="cpu")
    source = encoder.cache_entry / "encoder.onnx"
    if args.images:
        pictures = [Image.open(p).convert("RGB") for p in sorted(args.images.iterdir())[: args.n]]
        pixels = encoder.preprocess(pictures)["pixel_values"].numpy()
    else:
        size = encoder.preprocess([Image.new("RGB", (64, 64))])["pixel_values"].shape[-1]
        pixels = np.random.default_rng(0).uniform(-1, 1, (args.n, 3, size, size)).astype(np.float32)
    reference = features(source, pixels)
    found = groups(onnx.load(str(source), load_external_data=False))
    scheme = [n for names in found.values() for n in names if not any(k in n for k in FLOAT32_NODES)]
    trials = {**{name: nodes for name, nodes in found.items()}, "SCHEME (all but FLOAT32_NODES)": scheme,
              "ALL": [n for names in found.values() for n in names]}  # fmt: skip
    rows = []
    logging.disable(logging.WARNING)  # quantize_dynamic's advice to pre-process, once per trial
    with tempfile.TemporaryDirectory() as tmp:
        for name, nodes in trials.items():
            target = Path(tmp) / "q.onnx"
            quantize_dynamic(source, target, op_types_to_quantize=["MatMul"], per_channel=True,
                             reduce_range=int8_scheme()["reduce_range"],
                             weight_type=QuantType.QInt8, nodes_to_quantize=nodes)  # fmt: skip
            out = features(target, pixels)
            cosine = (out * reference).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
            rows.append((name, len(nodes), 1 - cosine.min(), np.abs(out - reference).max()))
    print(f"{'group':48s} {'nodes':>5s} {'1-min cos':>10s} {'max |d|':>10s}")
    for name, count, drift, delta in sorted(rows, key=lambda r: -r[2]):
        print(f"{name:48s} {count:5d} {drift:10.3e} {delta:10.3e}")


if __name__ == "__main__":
    main()
