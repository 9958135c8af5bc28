"""The tests' tiny models, saved in the released layouts: a 2-layer SigLIP (``save_pretrained``) and 44
random heads (``model_<key>_best.pth`` + neutral stats). Imports only torch, transformers and the
package, so that .ci/smoke.py builds the same model inside a virtualenv holding just the installed
wheel (no pytest, no checkout on the path); tests/conftest.py re-exports both builders."""

from __future__ import annotations

from pathlib import Path

TINY_IMAGE_SIZE = 32
TINY_DIM = 32


def build_tiny_siglip(folder: Path, *, image_size: int = TINY_IMAGE_SIZE, hidden: int = TINY_DIM) -> Path:
    """A 2-layer SigLIP (text + vision, like the real checkpoint) saved with ``save_pretrained``, and a
    preprocessor_config.json laid out as google/siglip2-so400m-patch16-384's (bilinear, mean/std 0.5)."""
    import json

    import torch
    from transformers import SiglipConfig, SiglipModel

    from emonet_face.runtime.encoder import siglip2_preprocessor_config

    torch.manual_seed(0)
    config = SiglipConfig(
        text_config={
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "vocab_size": 99,
        },
        vision_config={
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": image_size,
            "patch_size": 8,
        },
    )
    SiglipModel(config).eval().save_pretrained(folder)
    processor = siglip2_preprocessor_config(image_size)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


def build_tiny_heads(folder: Path, *, in_dim: int = TINY_DIM, hidden: tuple[int, ...] = (16, 8), seed: int = 0) -> Path:
    """44 random heads written in the released layout (``model_<key>_best.pth`` + neutral stats JSON)."""
    import json

    import torch

    from emonet_face import taxonomy as tx
    from emonet_face.heads import HeadArchitecture, build_head_module

    torch.manual_seed(seed)
    arch = HeadArchitecture(in_dim, hidden)
    stats = {}
    for i, key in enumerate(tx.HEAD_KEYS):
        torch.save(build_head_module(arch).state_dict(), folder / tx.head_file_name(key))
        stats[tx.head_stats_key(key)] = {"mean": 0.05 * (i % 7) - 0.1, "std": 1.0}
    (folder / tx.NEUTRAL_STATS_FILENAME).write_text(json.dumps(stats))
    return folder
