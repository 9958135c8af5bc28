"""Our SigLIP preprocessing equals transformers' own SiglipImageProcessor (PIL backend) bit for bit,
declines configs it does not reproduce, and spares compiled runtimes the transformers import."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from emonet_face.runtime.encoder import _transformers_image_processor, load_image_processor, siglip2_preprocessor_config
from emonet_face.runtime.preprocess import SiglipPreprocessor, preprocessor_from_config


def _odd_images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    rgb = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(50, 37), (32, 32), (301, 640), (3, 5)]]
    rgba = Image.fromarray(rng.integers(0, 256, (40, 60, 4), dtype=np.uint8), "RGBA")
    palette = rgb[0].convert("P")
    palette.info["transparency"] = 3  # a transparent palette colour: composited on white, as transformers does
    return [*rgb, rgb[2].convert("L"), rgba, rgb[0].convert("LA"), rgb[0].convert("P"), palette]


@pytest.mark.parametrize(
    "config",
    [
        siglip2_preprocessor_config(32),  # bilinear, mean = std = 0.5 (the released encoder's file)
        {**siglip2_preprocessor_config(24), "resample": 3, "image_mean": [0.481, 0.458, 0.408], "image_std": [0.269, 0.261, 0.276]},
        {**siglip2_preprocessor_config(16), "do_normalize": False},
        {**siglip2_preprocessor_config(16), "do_rescale": False},
    ],
    ids=["released", "bicubic-clip-stats", "no-normalise", "no-rescale"],
)
def test_pixels_equal_transformers_bit_for_bit(config, tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    ours = load_image_processor(tmp_path)
    assert isinstance(ours, SiglipPreprocessor)
    reference = _transformers_image_processor(tmp_path)  # the independent reference: transformers' own
    for image in _odd_images():
        mine = ours(images=[image], return_tensors="pt")["pixel_values"].numpy()
        theirs = reference(images=[image], return_tensors="pt")["pixel_values"].numpy()
        assert mine.dtype == theirs.dtype == np.float32
        assert mine.shape == theirs.shape == (1, 3, config["size"]["height"], config["size"]["width"])
        assert mine.tobytes() == theirs.tobytes(), f"{image.mode} {image.size}"
    batch = ours(images=_odd_images()[:3], return_tensors="pt")["pixel_values"]
    assert batch.shape[0] == 3


def test_a_saved_config_reads_back_the_same_for_us_and_for_transformers(tmp_path):
    """What an export writes: our own reader and transformers' both get the same preprocessing."""
    config = {**siglip2_preprocessor_config(24), "resample": 3}
    saved = preprocessor_from_config(config).save_pretrained(tmp_path)
    assert saved == tmp_path / "preprocessor_config.json"
    assert load_image_processor(tmp_path) == preprocessor_from_config(config)
    image = _odd_images()[2]
    theirs = _transformers_image_processor(tmp_path)(images=[image], return_tensors="pt")["pixel_values"]
    assert theirs.numpy().tobytes() == load_image_processor(tmp_path)([image])["pixel_values"].numpy().tobytes()


@pytest.mark.parametrize(
    "change",
    [
        {"image_processor_type": "Siglip2ImageProcessor"},  # NaFlex: patches, not a square
        {"do_center_crop": True, "crop_size": {"height": 8, "width": 8}},  # a step it does not do
        {"size": {"shortest_edge": 32}},
        {"resample": None},  # unstated: transformers' default changed between releases
        {"image_mean": [0.5, 0.5]},
        {"image_mean": 0.5},
    ],
    ids=["naflex", "crop", "shortest-edge", "no-resample", "two-means", "scalar-mean"],
)
def test_configs_it_does_not_reproduce_go_to_transformers(change, tmp_path):
    config = {**siglip2_preprocessor_config(32), **change}
    config = {k: v for k, v in config.items() if v is not None}
    assert preprocessor_from_config(config) is None
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    if change.get("image_processor_type") == "Siglip2ImageProcessor":
        assert type(load_image_processor(tmp_path)).__name__.startswith("Siglip2ImageProcessor")


def test_describe_names_the_configured_processor(tmp_path):
    from emonet_face.runtime.encoder import ImageEncoder

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(siglip2_preprocessor_config(32)))
    described = ImageEncoder.describe_processor(load_image_processor(tmp_path))
    assert described == {
        "processor": "SiglipImageProcessor",
        "size": {"height": 32, "width": 32},
        "resample": 2,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }


def test_a_compiled_runtime_with_a_warm_cache_never_imports_transformers(tiny_encoder_dir, tiny_heads_dir, tmp_path):
    """The first load converts (that needs transformers); a later process loads the cached graph and
    scores a picture without importing it (its import is most of a compiled run's start-up)."""
    pytest.importorskip("onnxruntime", reason="the onnx extra (installed by .ci/run) runs the compiled graph")
    picture = tmp_path / "face.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(picture)
    script = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from emonet_face import EmoNetFace\n"
        f"net = EmoNetFace.from_pretrained(encoder={str(tiny_encoder_dir)!r}, heads={str(tiny_heads_dir)!r}, "
        f"device='cpu', backend='onnx', dtype='float32', compiled_dir={str(tmp_path / 'compiled')!r})\n"
        f"rows = net.predict([{str(picture)!r}], faces='none')\n"
        "print(len(rows), 'transformers' in sys.modules)\n"
    )
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr[-2000:]
    assert runs[0].stdout.split()[-2:] == ["1", "True"]  # the conversion loads the PyTorch weights
    assert runs[1].stdout.split()[-2:] == ["1", "False"]
