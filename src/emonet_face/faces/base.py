"""The detector interface: a face box type and the ``Detector`` protocol. Detectors are picked by
name through :mod:`emonet_face.faces.registry`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image

from emonet_face.errors import EmoNetError

__all__ = ["Detector", "DetectorError", "Face", "sort_faces"]


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
        eyes = None
        if self.eyes is not None:
            left_x, left_y, right_x, right_y = self.eyes
            eyes = (left_x * factor, left_y * factor, right_x * factor, right_y * factor)
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


def sort_faces(faces: list[Face]) -> list[Face]:
    """Reading order: left to right by box centre, ties top to bottom."""
    return sorted(faces, key=lambda f: (round(f.box_x + f.box_w / 2), f.box_y))
