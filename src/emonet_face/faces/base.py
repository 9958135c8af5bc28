"""The detector interface: a face box type, the ``Detector`` protocol and a registry by name,
so that ``--detector NAME`` can pick any detector without the pipeline knowing about it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image

from emonet_face.errors import EmoNetError

__all__ = [
    "DEFAULT_DETECTOR",
    "Detector",
    "Face",
    "available_detectors",
    "get_detector",
    "register_detector",
]

DEFAULT_DETECTOR = "blazeface"


@dataclass(frozen=True)
class Face:
    """A detected face in pixels of the (orientation-corrected) image it was found in."""

    box_x: float
    box_y: float
    box_w: float
    box_h: float
    score: float
    """Detector confidence; its scale depends on the detector (comparable within one detector only)."""
    eyes: tuple[float, float, float, float] | None = None
    """Eye centres ``(left_x, left_y, right_x, right_y)`` where the detector gives them; left and
    right are the person's (the left eye is on the image's right in an unmirrored frontal photo)."""

    @property
    def area(self) -> float:
        return self.box_w * self.box_h

    def scaled(self, factor: float) -> Face:
        """The same face in an image resized by ``factor`` (detectors often run on a resized copy)."""
        eyes = None if self.eyes is None else tuple(v * factor for v in self.eyes)
        return Face(
            self.box_x * factor, self.box_y * factor, self.box_w * factor, self.box_h * factor, self.score, eyes
        )


@runtime_checkable
class Detector(Protocol):
    """Anything that finds faces in an RGB image. Faces come back sorted left to right, then top
    to bottom, so that the 0-based ``face`` index is stable and readable."""

    name: str

    def detect(self, image: Image.Image) -> list[Face]: ...


class DetectorError(EmoNetError):
    """A detector cannot be built (unknown name, missing package or weights)."""


_REGISTRY: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str, factory: Callable[..., Detector]) -> None:
    """Make ``factory`` available as ``--detector name`` (later registrations replace earlier ones)."""
    _REGISTRY[name.lower()] = factory


def available_detectors() -> list[str]:
    """Registered detector names (registration does not import heavy packages)."""
    import emonet_face.faces.detectors  # noqa: F401  (registers the built-in detectors)

    return sorted(_REGISTRY)


def get_detector(spec: str | Detector | None = None, **options: object) -> Detector:
    """Build a detector from ``NAME`` or ``NAME:ARGUMENT`` (e.g. ``yunet:/models/yunet.onnx``).

    The part after the first colon is passed to the factory as its ``source`` (a weights file,
    Hub id, …). A ready :class:`Detector` is returned unchanged.
    """
    if spec is not None and not isinstance(spec, str):
        return spec
    names = available_detectors()
    text = (spec or DEFAULT_DETECTOR).strip()
    name, _, source = text.partition(":")
    factory = _REGISTRY.get(name.lower())
    if factory is None:
        raise DetectorError(f"--detector {text}: unknown face detector; choose one of {', '.join(names)}")
    if source:
        options["source"] = source
    return factory(**options)


def sort_faces(faces: list[Face]) -> list[Face]:
    """Reading order: left to right by box centre, ties top to bottom."""
    return sorted(faces, key=lambda f: (round(f.box_x + f.box_w / 2), f.box_y))
