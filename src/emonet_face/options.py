"""Run options as data: how to load a model, how to find faces, how to read videos and shards.

Each group is a validated dataclass, declared once and built once from wherever a run starts: the
CLI (every command that loads a model takes :class:`ModelOptions`' options, every command that finds
faces :class:`FaceOptions`'), the server's config, the Ray engine's actors (the dataclasses pickle)
and the Python API. Checks live in ``__post_init__``, so a bad value is the same one-line
:class:`~emonet_face.errors.InputError` from every entry point, naming the CLI option.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from emonet_face.errors import InputError
from emonet_face.faces import DEFAULT_MARGIN, FaceMode
from emonet_face.inputs.video import DEFAULT_FPS
from emonet_face.runtime import PRECISIONS, available_backends

__all__ = ["DEFAULT_BATCH_SIZE", "FaceOptions", "MediaOptions", "ModelOptions", "check_fps", "option_name"]

DEFAULT_BATCH_SIZE = 16
"""Crops per encoder batch (``--batch-size``)."""


def option_name(field_name: str) -> str:
    """The CLI spelling of a dataclass field: ``min_face_score`` → ``--min-face-score``."""
    return "--" + field_name.replace("_", "-")


def _refuse(field_name: str, value: Any, problem: str) -> None:
    shown = f"{value:g}" if isinstance(value, float) else value
    raise InputError(f"{option_name(field_name)} {shown}: {problem}")


def check_fps(fps: float) -> None:
    """``--fps``: frames per second, any number more than 0; the same one-line error wherever it is
    taken (``predict``/``explain``: frames scored per second of video; ``live``: at most this many)."""
    if not fps > 0:
        _refuse("fps", fps, "must be more than 0 (frames scored per second of video, e.g. 1 or 0.5)")


@dataclass(frozen=True)
class ModelOptions:
    """Which model to load and how to run its encoder (see :meth:`EmoNetFace.from_pretrained
    <emonet_face.pipeline.EmoNetFace.from_pretrained>` for each field's meaning)."""

    model: str = "large"
    encoder: str | None = None
    heads: str | None = None
    revision: str | None = None
    cache_dir: str | Path | None = None
    local_files_only: bool | None = None
    device: str | None = None
    backend: str = "auto"
    dtype: str | None = None
    """``None`` or ``"auto"``: what the hardware computes natively (see :mod:`emonet_face.runtime.device`)."""
    normalize: bool = True
    compiled_dir: str | Path | None = None
    force_precision: bool = False
    """Run ``--dtype int8`` even where this CPU's check-precision record failed (``--force-precision``)."""

    def __post_init__(self) -> None:
        if self.dtype is not None and not isinstance(self.dtype, str):
            object.__setattr__(self, "dtype", str(self.dtype).removeprefix("torch."))
        if self.dtype == "auto":
            object.__setattr__(self, "dtype", None)
        if self.dtype is not None and self.dtype.lower() not in PRECISIONS:
            _refuse("dtype", self.dtype, "use auto, float32, bfloat16, float16 or int8")
        backends = ("auto", *available_backends())
        if str(self.backend).lower() not in backends:
            _refuse("backend", self.backend, f"use one of {', '.join(backends)}")
        if self.device is not None and not isinstance(self.device, str):
            object.__setattr__(self, "device", str(self.device))

    @property
    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`EmoNetFace.from_pretrained <emonet_face.pipeline.EmoNetFace.from_pretrained>`."""
        return asdict(self)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly fields (paths as text): what the Ray engine records in its manifest."""
        return {f.name: (str(v) if isinstance(v, Path) else v) for f in fields(self) for v in [getattr(self, f.name)]}


@dataclass(frozen=True)
class FaceOptions:
    """How faces are found and cropped (``--faces``, ``--detector``, ``--min-face-score``, ``--align``,
    ``--margin``). ``faces="none"`` scores whole images (pre-cropped faces, the EmoNet-Face datasets)."""

    faces: FaceMode | str = FaceMode.auto
    detector: Any = None
    """A registered detector name (``NAME`` or ``NAME:SOURCE``), a ready detector, or ``None``: the default."""
    min_face_score: float | None = None
    align: bool = False
    margin: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "faces", FaceMode(self.faces))
        except ValueError:
            _refuse("faces", self.faces, "use detect, none or auto")
        if not self.margin >= 0:
            _refuse("margin", self.margin, "must be 0 or more (context around each face, a fraction of its box side)")
        if self.min_face_score is not None and not self.min_face_score >= 0:
            _refuse("min_face_score", self.min_face_score, "must be 0 or more")

    @property
    def finds_faces(self) -> bool:
        return self.faces is not FaceMode.none

    @property
    def detector_options(self) -> dict[str, float]:
        """Keyword arguments for :func:`emonet_face.faces.get_detector` (``--min-face-score``)."""
        return {} if self.min_face_score is None else {"threshold": self.min_face_score}


@dataclass(frozen=True)
class MediaOptions:
    """How videos and shards become rows (``--fps``, ``--max-frames``, ``--image-column``, ``--carry-json``)."""

    fps: float = DEFAULT_FPS
    max_frames: int | None = None
    image_column: str | None = None
    carry_json: bool = True

    def __post_init__(self) -> None:
        check_fps(self.fps)
        if self.max_frames is not None and self.max_frames < 1:
            _refuse("max_frames", self.max_frames, "must be at least 1")
