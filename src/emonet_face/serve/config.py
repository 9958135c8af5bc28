"""What ``emonet-face serve`` was started with: :class:`ServeConfig`, and how the model is loaded from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emonet_face.errors import InputError
from emonet_face.faces import FaceMode
from emonet_face.options import FaceOptions, ModelOptions
from emonet_face.pipeline import EmoNetFace
from emonet_face.runtime import BACKENDS as BUILTIN_BACKENDS

__all__ = ["BACKENDS", "FACE_MODES", "ServeConfig", "load_model"]

BACKENDS = BUILTIN_BACKENDS
FACE_MODES = tuple(mode.value for mode in FaceMode)


@dataclass
class ServeConfig:
    """Everything ``emonet-face serve`` was started with (shown, minus the key, by ``/v1/info``)."""

    model: str = "large"
    encoder: str | None = None
    heads: str | None = None
    revision: str | None = None
    backend: str = "auto"
    device: str | None = None
    dtype: str = "auto"
    normalize: bool = True
    force_precision: bool = False
    cache_dir: str | None = None
    faces: str = "auto"
    detector: str | None = None
    margin: float = 0.4
    min_face_score: float | None = None
    align: bool = False
    max_batch_size: int = 16
    batch_timeout_ms: float = 10.0
    max_queue: int = 256
    max_upload_mb: float = 20.0
    workers: int = 2
    max_streams: int = 8
    """Live WebSocket streams (``/v1/stream``) open at once; more are refused (close code 1013)."""
    send_timeout_s: float = 10.0
    """A stream whose client takes no reply for this long (it stopped reading) is closed (code 1008)."""
    api_key: str | None = field(default=None, repr=False)

    @property
    def model_options(self) -> ModelOptions:
        """The model options (checked as every command checks them)."""
        return ModelOptions(
            model=self.model, encoder=self.encoder, heads=self.heads, revision=self.revision, cache_dir=self.cache_dir,
            device=self.device, backend=self.backend, dtype=self.dtype, normalize=self.normalize,
            force_precision=self.force_precision,
        )

    def face_options(self, faces: str | None = None, detector: Any = None) -> FaceOptions:
        """The face options, with a request's own ``faces`` mode and a ready ``detector`` if given."""
        return FaceOptions(
            faces=faces or self.faces,
            detector=detector if detector is not None else self.detector,
            min_face_score=self.min_face_score,
            align=self.align,
            margin=self.margin,
        )

    @property
    def detector_options(self) -> dict[str, float]:
        """Keyword arguments for :func:`emonet_face.faces.get_detector` (``--min-face-score``)."""
        return self.face_options().detector_options

    def check(self) -> None:
        """Raise :class:`InputError` (one line, naming the option) for values the server cannot run with."""
        self.model_options  # noqa: B018  (checks the model options)
        self.face_options()
        problems = {
            "--max-batch-size": self.max_batch_size < 1 and "must be at least 1",
            "--batch-timeout-ms": self.batch_timeout_ms < 0 and "must be 0 or more",
            "--max-queue": self.max_queue < 1 and "must be at least 1",
            "--max-upload-mb": self.max_upload_mb <= 0 and "must be positive",
            "--workers": self.workers < 1 and "must be at least 1",
            "--max-streams": self.max_streams < 1 and "must be at least 1",
            "--send-timeout-s": not self.send_timeout_s > 0 and "must be positive",
        }
        for option, problem in problems.items():
            if problem:
                raise InputError(f"{option} {getattr(self, option[2:].replace('-', '_'))}: {problem}")

    @property
    def max_upload_bytes(self) -> int:
        """``--max-upload-mb`` in bytes (1 MB = 1,000,000 bytes, as messages count: :func:`~emonet_face.errors.format_size`)."""
        return int(self.max_upload_mb * 1_000_000)


def load_model(config: ServeConfig) -> EmoNetFace:
    """Load the model the way ``predict`` does (same options, same defaults)."""
    return EmoNetFace.from_pretrained(options=config.model_options)
