"""SigLIP's image preprocessing (resize, rescale, normalise) without importing transformers.

Why: importing transformers' image-processor machinery costs a compiled-runtime run (OpenVINO, ONNX
Runtime, an exported graph) about 2.7 s of its start-up on a laptop CPU, more than its whole
runtime session; those runs need no other part of transformers. :class:`SiglipPreprocessor`
reproduces ``SiglipImageProcessor``'s PIL path bit for bit (tests compare the two on odd sizes,
grey, RGBA and palette images): convert to RGB (transparency composited on white), PIL resize to
the configured square with the configured filter, then ``float32(uint8 * rescale_factor)`` and
``(x - mean) / std`` in float32. Those two last steps depend on the byte value and the channel only,
so they run as one 256-entry table per channel, which is exact and faster than the arithmetic.

:func:`preprocessor_from_config` takes a ``preprocessor_config.json`` only when it names
``SiglipImageProcessor`` and holds nothing this class does not reproduce; anything else (SigLIP2
NaFlex, crops, padding) is left to transformers by the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["SiglipPreprocessor", "preprocessor_from_config"]

CONFIG_FILE = "preprocessor_config.json"
PROCESSOR_TYPES = ("SiglipImageProcessor", "SiglipImageProcessorPil")
"""``image_processor_type`` values whose preprocessing :class:`SiglipPreprocessor` reproduces."""
REQUIRED_FIELDS = ("size", "resample", "image_mean", "image_std")
"""Fields whose transformers defaults changed between releases: taken only when the file states them."""
IGNORED_FIELDS = ("image_processor_type", "processor_class", "do_convert_rgb", "_processor_class")
"""Fields that change nothing here: the class names, and RGB conversion (always done, as transformers does)."""
OPTIONAL_FIELDS = ("do_resize", "do_rescale", "do_normalize", "rescale_factor")


@dataclass(frozen=True)
class SiglipPreprocessor:
    """Images → ``{"pixel_values": (N, 3, H, W) float32}``, exactly as ``SiglipImageProcessor`` (PIL
    backend) computes them. Picklable: DataLoader workers get it. The attribute names are transformers'
    own, so code that reads a processor's ``size``/``resample``/``image_mean`` reads this one too."""

    size: dict[str, int]
    resample: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    rescale_factor: float = 1 / 255
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    processor_type: str = "SiglipImageProcessor"
    tables: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", self._value_tables())

    def _value_tables(self) -> np.ndarray:
        """(3, 256) float32: the rescaled, normalised value of each byte in each channel, computed with
        transformers' own operations and dtypes (float64 product cast to float32, then float32
        subtraction and division), so a lookup equals the arithmetic bit for bit."""
        values = np.arange(256, dtype=np.uint8)
        scaled = (values.astype(np.float64) * self.rescale_factor).astype(np.float32) if self.do_rescale else values.astype(np.float32)
        if not self.do_normalize:
            return np.stack([scaled] * 3)
        mean, std = np.array(self.image_mean, dtype=np.float32), np.array(self.image_std, dtype=np.float32)
        return np.stack([(scaled - mean[c]) / std[c] for c in range(3)])

    def _pixels(self, image: Image.Image) -> np.ndarray:
        """One image as (3, H, W) float32."""
        rgb = as_rgb(image)
        if self.do_resize:
            rgb = rgb.resize((self.size["width"], self.size["height"]), resample=self.resample)
        values = np.asarray(rgb)
        return np.stack([self.tables[c][values[..., c]] for c in range(3)])

    def to_config(self) -> dict[str, Any]:
        """This preprocessing as ``preprocessor_config.json`` content, which transformers reads too."""
        return {
            "image_processor_type": self.processor_type,
            "do_resize": self.do_resize,
            "size": dict(self.size),
            "resample": self.resample,
            "do_rescale": self.do_rescale,
            "rescale_factor": self.rescale_factor,
            "do_normalize": self.do_normalize,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
        }

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``preprocessor_config.json`` into ``folder`` (an export carries its preprocessing)."""
        path = Path(folder) / CONFIG_FILE
        path.write_text(json.dumps(self.to_config(), indent=2) + "\n")
        return path

    def __call__(self, images: Sequence[Image.Image], return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        """The batch, transformers' call signature (``images=``, ``return_tensors="pt"``)."""
        if return_tensors != "pt":
            raise ValueError(f"SiglipPreprocessor returns torch tensors only (return_tensors='pt'), got {return_tensors!r}")
        return {"pixel_values": torch.from_numpy(np.stack([self._pixels(image) for image in images]))}


def as_rgb(image: Image.Image) -> Image.Image:
    """RGB as transformers converts it: transparency (an alpha band or a palette's transparent colour)
    composited onto white, anything else converted."""
    if image.mode == "RGB":
        return image
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def preprocessor_from_config(config: Mapping[str, Any]) -> SiglipPreprocessor | None:
    """The :class:`SiglipPreprocessor` a ``preprocessor_config.json`` describes, or None when it
    describes anything this class does not reproduce exactly (then transformers' own processor runs)."""
    known = set(REQUIRED_FIELDS) | set(IGNORED_FIELDS) | set(OPTIONAL_FIELDS)
    if config.get("image_processor_type") not in PROCESSOR_TYPES or set(config) - known:
        return None
    if any(name not in config for name in REQUIRED_FIELDS):
        return None
    size, mean, std = config["size"], config["image_mean"], config["image_std"]
    if not isinstance(size, Mapping) or set(size) != {"height", "width"}:
        return None
    if not all(isinstance(v, (list, tuple)) and len(v) == 3 for v in (mean, std)):  # a scalar mean: transformers'
        return None
    return SiglipPreprocessor(
        size={"height": int(size["height"]), "width": int(size["width"])},
        resample=int(config["resample"]),
        image_mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        image_std=(float(std[0]), float(std[1]), float(std[2])),
        rescale_factor=float(config.get("rescale_factor", 1 / 255)),
        do_resize=bool(config.get("do_resize", True)),
        do_rescale=bool(config.get("do_rescale", True)),
        do_normalize=bool(config.get("do_normalize", True)),
        processor_type=str(config["image_processor_type"]).removesuffix("Pil"),
    )
