"""The image encoder: SigLIP / SigLIP2 vision tower + its own image processor, nothing else.

Only the vision tower and the image processor are loaded: the text tower (about half of the
so400m checkpoint) and the tokenizer are never downloaded into memory. Features follow
``get_image_features`` semantics (the attention-pooled ``pooler_output``) and are L2-normalised,
as the released heads expect.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from emonet_face.errors import ModelLoadError
from emonet_face.hub import DEFAULT_ENCODER, ENCODER_PATTERNS, resolve_model_dir

__all__ = ["ImageEncoder", "siglip2_preprocessor_config"]


def siglip2_preprocessor_config(image_size: int = 384) -> dict[str, Any]:
    """``preprocessor_config.json`` as google/siglip2-so400m-patch16-384 ships it (bilinear resize
    to a square, rescale to 0..1, normalise with mean = std = 0.5), for checkpoints built locally
    (tests, benchmarks) so they exercise exactly the released preprocessing."""
    return {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor",
        "processor_class": "SiglipProcessor",
        "resample": 2,
        "rescale_factor": 1 / 255,
        "size": {"height": image_size, "width": image_size},
    }


# model_type in config.json -> (module, vision model class)
_VISION_CLASSES = {
    "siglip": "SiglipVisionModel",
    "siglip_vision_model": "SiglipVisionModel",
    "siglip2": "Siglip2VisionModel",
    "siglip2_vision_model": "Siglip2VisionModel",
}


def _load_image_processor(folder: Path) -> Any:
    """The checkpoint's own image processor, PIL backend (the numerical reference; needs no torchvision)."""
    import transformers
    from transformers import AutoImageProcessor

    major = int(transformers.__version__.split(".")[0])
    kwargs = {"backend": "pil"} if major >= 5 else {"use_fast": False}
    try:
        return AutoImageProcessor.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{folder}: no usable image processor (preprocessor_config.json): {exc}") from None


class ImageEncoder(nn.Module):
    """Images → L2-normalised image features ``(N, D)``.

    Carries its own preprocessing (:meth:`preprocess`), so callers never need to know the
    checkpoint's resolution, resampling or normalisation constants.
    """

    def __init__(
        self,
        vision_model: nn.Module,
        processor: Any,
        *,
        normalize: bool = True,
        name: str = "",
        revision: str | None = None,
    ) -> None:
        super().__init__()
        self.vision_model = vision_model.eval()
        self.processor = processor
        self.normalize = normalize
        self.name = name
        self.revision = revision

    @classmethod
    def from_pretrained(
        cls,
        ref: str | Path = DEFAULT_ENCODER,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        normalize: bool = True,
        attn_implementation: str = "sdpa",
    ) -> ImageEncoder:
        """Load the vision tower and image processor of a SigLIP/SigLIP2 checkpoint (Hub id or folder).

        ``dtype`` defaults to float32 (bfloat16 is worthwhile on GPU only). ``attn_implementation``
        defaults to PyTorch SDPA. Text weights in a full checkpoint are skipped.
        """
        folder = resolve_model_dir(
            ref,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=ENCODER_PATTERNS,
            local_files_only=local_files_only,
            what="encoder",
        )
        config_path = folder / "config.json"
        try:
            model_type = json.loads(config_path.read_text())["model_type"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ModelLoadError(
                f"{config_path}: missing or invalid encoder config ({exc!r}); expected a SigLIP/SigLIP2 checkpoint"
            ) from None
        class_name = _VISION_CLASSES.get(model_type)
        if class_name is None:
            raise ModelLoadError(
                f"{folder}: model_type {model_type!r} is not a SigLIP/SigLIP2 checkpoint; pass a SigLIP2 encoder to --encoder"
            )
        import transformers

        vision_cls = getattr(transformers, class_name)
        logger = logging.getLogger("transformers.modeling_utils")
        previous = logger.level
        logger.setLevel(logging.ERROR)  # "text weights not used" is expected, not a user problem
        try:
            model = vision_cls.from_pretrained(
                str(folder), dtype=dtype or torch.float32, attn_implementation=attn_implementation
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{folder}: could not load the encoder weights ({exc})") from None
        finally:
            logger.setLevel(previous)
        encoder = cls(model, _load_image_processor(folder), normalize=normalize, name=str(ref), revision=revision)
        return encoder.to(device) if device is not None else encoder

    @property
    def dim(self) -> int:
        config = self.vision_model.config
        return int(getattr(config, "hidden_size", 0))

    @property
    def device(self) -> torch.device:
        return next(self.vision_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vision_model.parameters()).dtype

    def preprocess(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """The checkpoint's own preprocessing (resize, rescale, normalise), on CPU.

        Safe to call in DataLoader workers: it touches no model state.
        """
        batch = self.processor(images=list(images), return_tensors="pt")
        return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}

    @torch.inference_mode()
    def forward(self, pixel_values: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        """Features for preprocessed inputs, float32 on the model's device."""
        inputs = {"pixel_values": pixel_values.to(self.device, self.dtype)}
        inputs.update({k: v.to(self.device) for k, v in extra.items()})
        features = self.vision_model(**inputs).pooler_output.float()
        return nn.functional.normalize(features, dim=-1) if self.normalize else features

    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Preprocess and encode in one call (convenient; pipelines overlap the two instead)."""
        return self(**self.preprocess(images))

    def describe(self) -> dict[str, Any]:
        """What produced the features: recorded in embedding-store manifests and outputs."""
        proc = self.processor
        return {
            "encoder": self.name,
            "revision": self.revision,
            "normalize": self.normalize,
            "dim": self.dim,
            "processor": type(proc).__name__,
            "size": getattr(proc, "size", None),
            "resample": int(getattr(proc, "resample", -1)) if getattr(proc, "resample", None) is not None else None,
            "image_mean": list(getattr(proc, "image_mean", []) or []),
            "image_std": list(getattr(proc, "image_std", []) or []),
        }
