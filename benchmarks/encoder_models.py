"""Random-weight models, photos and whole ``predict`` processes for ``bench_encoder.py`` and
``bench_int8_e2e.py``.

* :func:`build_models`: a SigLIP checkpoint (text + vision, ``model_type`` ``siglip`` as
  google/siglip2-so400m-patch16-384 ships it, with its preprocessor_config.json) and 44 heads in
  the released layout (``model_<key>_best.pth`` + neutral stats), random weights, written once with
  ``save_pretrained`` into a cache folder and reused. ``real_size=True``: the so400m/16-384
  architecture (hidden 1152, MLP 4304, 27 layers, 16 heads, patch 16, 384 px; ~4.5 GB, a minute
  or two to write) with Large heads (1152 → 1024 → 512 → 256 → 1); else a tiny one (seconds).
  Timing does not depend on the weights; accuracy does, so random weights only show drift.
* :func:`face_photos`: photos with one real face each (scikit-image's astronaut, shipped: no download).
* :func:`run_predict`: ``python -m emonet_face predict`` as a whole process, wall time and its table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SO400M = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16}
SO400M_VISION = {**SO400M, "patch_size": 16, "image_size": 384}
SO400M_TEXT = {**SO400M, "vocab_size": 256000, "max_position_embeddings": 64}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
TINY_VISION = {**TINY, "patch_size": 8, "image_size": 64}
TINY_TEXT = {**TINY, "vocab_size": 99}
LARGE_HEADS = (1024, 512, 256)
TINY_HEADS = (16, 8)
UNSET_FOR_RUNS = ("EMONET_FACE_BACKEND", "EMONET_FACE_DTYPE")
"""Test-suite overrides of what ``auto`` means: removed for every measured process, so ``default`` is
the default a user gets (``$EMONET_FACE_CPU_BF16`` is kept: it stands for the CPU)."""


def build_models(root: Path, *, real_size: bool) -> tuple[Path, Path]:
    """``(encoder folder, heads folder)`` under ``root``, built on the first call."""
    if real_size:
        encoder = build_encoder(root / "siglip2-so400m-patch16-384-random", SO400M_VISION, SO400M_TEXT)
        return encoder, build_heads(root / "heads-large-random", SO400M["hidden_size"], LARGE_HEADS)
    encoder = build_encoder(root / "siglip-tiny-random", TINY_VISION, TINY_TEXT)
    return encoder, build_heads(root / "heads-tiny-random", TINY["hidden_size"], TINY_HEADS)


def random_weights(model: Any) -> Any:
    """A model built on meta tensors, materialised with random weights in place: N(0, 0.02), biases
    0, norms 1, position ids counted (fast even at real size: nothing is initialised twice)."""
    import torch

    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif "norm" in name:
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02)
        for name, buffer in model.named_buffers():
            if "position_ids" in name:
                buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
    return model


def build_encoder(folder: Path, vision: dict, text: dict) -> Path:
    """A random SigLIP checkpoint (text + vision) written with ``save_pretrained``: weights N(0, 0.02),
    biases 0, norms 1 (initialised in place from meta tensors: fast even at real size)."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import SiglipConfig, SiglipModel

    from emonet_face.runtime.encoder import siglip2_preprocessor_config

    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("meta"):
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
    model = random_weights(model)
    tmp = folder.with_name(folder.name + ".partial")
    model.save_pretrained(tmp)
    (tmp / "preprocessor_config.json").write_text(json.dumps(siglip2_preprocessor_config(vision["image_size"])))
    tmp.rename(folder)  # complete or absent: a killed build is redone
    n_params = sum(p.numel() for p in model.parameters())
    print(f"built random encoder {folder.name} ({n_params / 1e6:.0f} M params) in {time.perf_counter() - start:.0f} s")
    return folder


def build_heads(folder: Path, in_dim: int, hidden: tuple[int, ...]) -> Path:
    """44 random heads in the released layout (``model_<key>_best.pth`` + the neutral stats JSON)."""
    import torch

    from emonet_face import taxonomy as tx
    from emonet_face.heads import HeadArchitecture, build_head_module

    if (folder / tx.NEUTRAL_STATS_FILENAME).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    arch = HeadArchitecture(in_dim, hidden)
    stats = {}
    for i, key in enumerate(tx.HEAD_KEYS):
        torch.save(build_head_module(arch).state_dict(), folder / tx.head_file_name(key))
        stats[tx.head_stats_key(key)] = {"mean": 0.01 * i, "std": 1.0}
    (folder / tx.NEUTRAL_STATS_FILENAME).write_text(json.dumps(stats))  # written last: marks a complete folder
    return folder


def face_photos(folder: Path, n: int) -> list[Path]:
    """``n`` JPEG photos (480-800 px) with one real face each, from scikit-image's astronaut picture
    by crop, flip, scale and brightness changes."""
    from PIL import Image, ImageEnhance
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    base = Image.fromarray(data.astronaut())  # 512x512, one frontal face
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        left, top = (int(v) for v in rng.integers(0, 60, 2))
        side, light = int(rng.integers(480, 800)), float(rng.uniform(0.7, 1.3))
        path = folder / f"photo{i:03d}.jpg"
        if not path.is_file():
            image = base.crop((left, top, left + 420, top + 420))
            if i % 2:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            image = ImageEnhance.Brightness(image.resize((side, side), Image.BICUBIC)).enhance(light)
            image.save(path, quality=90)
        paths.append(path)
    return paths


def run_env(cache: Path) -> dict[str, str]:
    """The environment of a measured process: the conversion cache at ``cache`` (warm after the first
    run), the test suite's ``auto`` overrides removed, this checkout's ``src`` first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET_FOR_RUNS}
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return {**env, "EMONET_FACE_CACHE": str(cache)}


def run_predict(photos: Path, out: Path, model: list[str], way: list[str], env: dict[str, str], batch: int) -> dict:
    """``python -m emonet_face predict PHOTOS --faces none --batch-size B`` as a whole process.

    Returns ``{"seconds", "rows", "table"}`` or ``{"failed": stderr tail}``."""
    command = [sys.executable, "-m", "emonet_face", "predict", str(photos), "--out", str(out), "--quiet"]
    command += ["--faces", "none", "--batch-size", str(batch), *model, *way]
    out.unlink(missing_ok=True)
    tick = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - tick
    if done.returncode != 0 or not out.is_file():
        return {"failed": done.stderr.strip()[-2000:] or f"exit {done.returncode}"}
    table = pd.read_csv(out)
    return {"seconds": seconds, "rows": len(table), "table": table}
