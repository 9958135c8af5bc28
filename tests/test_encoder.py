"""The encoder loads only the vision tower of a full SigLIP checkpoint and reproduces
get_image_features + L2 normalisation with the checkpoint's PIL preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from emonet_face.errors import ModelLoadError
from emonet_face.runtime.encoder import ImageEncoder


def _images(n: int, size: int = 50) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 7, 3), dtype=np.uint8)) for _ in range(n)]


def test_matches_full_model_image_features(tiny_encoder_dir):
    from transformers import SiglipModel

    encoder = ImageEncoder.from_pretrained(tiny_encoder_dir)
    assert encoder.dim == 32
    assert not any("text" in name for name, _ in encoder.named_parameters())
    images = _images(3)
    ours = encoder.embed(images)

    full = SiglipModel.from_pretrained(tiny_encoder_dir).eval()
    # Independent preprocessing: resize bilinear to 32x32, rescale, normalise with mean/std 0.5.
    arrays = [np.asarray(im.resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255.0 for im in images]
    pixels = torch.from_numpy((np.stack(arrays) - 0.5) / 0.5).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = full.get_image_features(pixel_values=pixels)
        features = out.pooler_output if hasattr(out, "pooler_output") else out
    reference = torch.nn.functional.normalize(features, dim=-1)
    assert torch.allclose(ours, reference, atol=1e-4)
    assert torch.allclose(ours.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_normalize_switch(tiny_encoder_dir):
    raw = ImageEncoder.from_pretrained(tiny_encoder_dir, normalize=False).embed(_images(2))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2), atol=1e-3)


def test_not_a_siglip_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="not a SigLIP"):
        ImageEncoder.from_pretrained(tmp_path)


def test_missing_model_offline():
    with pytest.raises(ModelLoadError, match="offline"):
        ImageEncoder.from_pretrained("nobody/no-such-encoder", local_files_only=True)
