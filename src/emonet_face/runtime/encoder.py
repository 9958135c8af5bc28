"""The image encoder: SigLIP / SigLIP2 vision tower + its own image processor, nothing else.

Only the vision tower and the image processor are loaded: the text tower (about half of the
so400m checkpoint) and the tokenizer are never downloaded into memory. Features follow
``get_image_features`` semantics (the attention-pooled ``pooler_output``) and are L2-normalised,
as the released heads expect.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import nn

from emonet_face.errors import ModelLoadError, damaged_file
from emonet_face.heads import is_heads_folder
from emonet_face.hub import DEFAULT_ENCODER, ENCODER_PATTERNS, resolve_model_dir
from emonet_face.runtime.base import Encoded
from emonet_face.runtime.preprocess import preprocessor_from_config

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "EncoderCheckpoint",
    "ImageEncoder",
    "ImagePreprocessor",
    "describe_encoder_run",
    "load_image_processor",
    "quiet_transformers",
    "siglip2_preprocessor_config",
]


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


def _read_json(path: Path) -> Any:
    """A checkpoint's JSON file, None when it is missing. One that exists but does not parse (cut
    short, overwritten) is a damaged file, named with how to get it again (not "no usable processor")."""
    try:
        return json.loads(path.read_bytes())
    except OSError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged_file(path, exc) from None


def _check_safetensors(folder: Path) -> None:
    """Read the header of every ``*.safetensors`` file of ``folder`` (a few KB each): a file cut short
    or overwritten is named before transformers fails on it with a traceback that names none."""
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as exc:  # SafetensorError (no common base), OSError
            raise damaged_file(path, exc) from None


# model_type in config.json -> (module, vision model class)
_VISION_CLASSES = {
    "siglip": "SiglipVisionModel",
    "siglip_vision_model": "SiglipVisionModel",
    "siglip2": "Siglip2VisionModel",
    "siglip2_vision_model": "Siglip2VisionModel",
}


def load_image_processor(folder: Path) -> Any:
    """The checkpoint's own preprocessing: :class:`~emonet_face.runtime.preprocess.SiglipPreprocessor`
    when ``preprocessor_config.json`` describes what it reproduces bit for bit (SigLIP and fixed-size
    SigLIP2 checkpoints; no transformers import, which compiled runtimes then never pay), else
    transformers' own processor, PIL backend (the numerical reference; needs no torchvision)."""
    config = _read_json(folder / "preprocessor_config.json")
    own = preprocessor_from_config(config) if isinstance(config, dict) else None
    return own if own is not None else _transformers_image_processor(folder)


def _transformers_image_processor(folder: Path) -> Any:
    import transformers
    from transformers import AutoImageProcessor

    major = int(transformers.__version__.split(".")[0])
    kwargs = {"backend": "pil"} if major >= 5 else {"use_fast": False}
    try:
        with quiet_transformers():
            return AutoImageProcessor.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{folder}: no usable image processor (preprocessor_config.json): {exc}") from None


class ImagePreprocessor:
    """The checkpoint's own preprocessing (resize, rescale, normalise) as a small picklable callable:
    images → ``{"pixel_values": (N, 3, H, W)}`` float32 tensors on the CPU. DataLoader workers get
    this object, never the model."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        batch = self.processor(images=list(images), return_tensors="pt")
        return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}


@dataclass(frozen=True)
class EncoderCheckpoint:
    """A resolved SigLIP/SigLIP2 checkpoint folder: read its config and processor without loading
    weights (a backend with a cached converted graph never needs the PyTorch weights)."""

    folder: Path
    model_type: str
    config: dict[str, Any]

    @classmethod
    def resolve(
        cls,
        ref: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool | None = None,
    ) -> EncoderCheckpoint:
        folder = resolve_model_dir(
            ref,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=ENCODER_PATTERNS,
            local_files_only=local_files_only,
            what="encoder",
        )
        config_path = folder / "config.json"
        if is_heads_folder(folder):
            raise ModelLoadError(
                f"{folder}: holds emonet-face heads (model_<key>_best.pth), not an encoder; pass it as --heads, "
                "and to --encoder a SigLIP2 folder (config.json + model.safetensors) or Hub id"
            )
        try:
            config = json.loads(config_path.read_bytes())
            model_type = config["model_type"]
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # cut short or overwritten
            raise damaged_file(config_path, exc) from None
        except (OSError, KeyError, TypeError) as exc:
            raise ModelLoadError(
                f"{config_path}: missing or invalid encoder config ({exc!r}); expected a SigLIP/SigLIP2 checkpoint"
            ) from None
        if model_type not in _VISION_CLASSES:
            raise ModelLoadError(
                f"{folder}: model_type {model_type!r} is not a SigLIP/SigLIP2 checkpoint; pass a SigLIP2 encoder to --encoder"
            )
        return cls(folder, model_type, config)

    @property
    def vision_config(self) -> dict[str, Any]:
        return self.config.get("vision_config", self.config)

    @property
    def dim(self) -> int:
        return int(self.vision_config.get("hidden_size", 0))

    @property
    def takes_extra_inputs(self) -> bool:
        """SigLIP2 NaFlex models take ``pixel_attention_mask`` and ``spatial_shapes`` besides pixels."""
        return self.model_type.startswith("siglip2")

    def processor(self) -> Any:
        return load_image_processor(self.folder)

    def load_vision_model(
        self, *, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"
    ) -> PreTrainedModel:
        """The vision tower alone (text weights of a full checkpoint are skipped)."""
        import transformers

        vision_cls = getattr(transformers, _VISION_CLASSES[self.model_type])
        _check_safetensors(self.folder)
        try:
            with quiet_transformers():  # "text weights not used" is expected, not a user problem
                return vision_cls.from_pretrained(str(self.folder), dtype=dtype, attn_implementation=attn_implementation)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{self.folder}: could not load the encoder weights ({exc})") from None


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
        self.graph_heads = None

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

        ``dtype`` defaults to float32. ``attn_implementation`` defaults to PyTorch SDPA. Text weights
        in a full checkpoint are skipped. For other backends (OpenVINO, ONNX Runtime) and automatic
        precision use :func:`emonet_face.runtime.load_encoder`.
        """
        checkpoint = EncoderCheckpoint.resolve(
            ref, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only
        )
        model = checkpoint.load_vision_model(dtype=dtype or torch.float32, attn_implementation=attn_implementation)
        encoder = cls(model, checkpoint.processor(), normalize=normalize, name=str(ref), revision=revision)
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
        return ImagePreprocessor(self.processor)(images)

    @torch.inference_mode()
    def forward(self, pixel_values: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        """Features for preprocessed inputs, float32 on the model's device."""
        inputs = {"pixel_values": pixel_values.to(self.device, self.dtype)}
        inputs.update({k: v.to(self.device) for k, v in extra.items()})
        features = self.vision_model(**inputs).pooler_output.float()
        return nn.functional.normalize(features, dim=-1) if self.normalize else features

    def encode(self, batch: Mapping[str, torch.Tensor]) -> Encoded:
        """The encoder interface's call (:class:`~emonet_face.runtime.base.Encoder`)."""
        return Encoded(self(**batch))

    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Preprocess and encode in one call (convenient; pipelines overlap the two instead)."""
        return self(**self.preprocess(images))

    @staticmethod
    def describe_processor(proc: Any) -> dict[str, Any]:
        """The preprocessing fields of :meth:`describe` (shared with the other backends)."""
        return {
            "processor": getattr(proc, "processor_type", type(proc).__name__),
            "size": getattr(proc, "size", None),
            "resample": int(getattr(proc, "resample", -1)) if getattr(proc, "resample", None) is not None else None,
            "image_mean": list(getattr(proc, "image_mean", []) or []),
            "image_std": list(getattr(proc, "image_std", []) or []),
        }

    def describe(self) -> dict[str, Any]:
        """What produced the features: recorded in embedding-store manifests and outputs."""
        return describe_encoder_run(
            self, backend="torch", precision=str(self.dtype).removeprefix("torch."), device=str(self.device)
        )


def describe_encoder_run(runtime: Any, *, backend: str, precision: str, device: str, **fields: Any) -> dict[str, Any]:
    """The one layout of ``describe()`` for every encoder runtime (torch, compiled, exported graph), so
    manifests and output metadata name the same fields whichever ran: id, revision, ``fields`` (which
    add to or replace those, e.g. an exported graph's source id and folder), normalisation, width,
    preprocessing, then backend, precision and device."""
    return {
        "encoder": runtime.name,
        "revision": runtime.revision,
        **fields,
        "normalize": runtime.normalize,
        "dim": runtime.dim,
        **ImageEncoder.describe_processor(runtime.processor),
        "backend": backend,
        "precision": precision,
        "device": device,
    }


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Transformers' messages and progress bars silenced while we load a checkpoint, then restored.

    Loading a vision tower out of a full checkpoint is expected to skip weights, and transformers
    says so (and more: "layers were not sharded", a "Loading weights" bar); the terminal is kept for
    our own progress bar and errors. The settings are put back afterwards, so that a notebook's
    own transformers logging is left as it was.

    Transformers is not imported to silence it (0.7 s that a compiled runtime, which never needs
    it, would pay): when it is not imported yet, the block runs with ``TRANSFORMERS_VERBOSITY=error``,
    which it reads if the block imports it, and its own default level is set afterwards."""
    if "transformers" not in sys.modules:
        with _quiet_first_import():
            yield
        return
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextmanager
def _quiet_first_import() -> Iterator[None]:
    """The block with ``TRANSFORMERS_VERBOSITY=error``; if it imported transformers, its level is then
    set to what the user's environment would have given it."""
    name = "TRANSFORMERS_VERBOSITY"
    users = os.environ.get(name)
    os.environ[name] = "error"
    try:
        yield
    finally:
        if users is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = users
        if "transformers.utils.logging" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity(hf_logging.log_levels.get(users or "", hf_logging.WARNING))
