"""From one image to the regions that get scored, following ``--faces detect|none|auto``.

This is the pipeline's expansion step: one image in, zero or more crops out, each with the id
columns ``face``, ``box_*``, ``det_score`` and ``region`` that say where it came from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from PIL import Image

from emonet_face.faces.base import Detector, Face
from emonet_face.faces.crop import DEFAULT_MARGIN, crop_face

__all__ = ["EYE_COLUMNS", "FACE_COLUMNS", "FaceMode", "Region", "face_regions", "looks_like_portrait"]

EYE_COLUMNS = ("eye_left_x", "eye_left_y", "eye_right_x", "eye_right_y")
"""Eye centres in image pixels where the detector gives them; left/right are the person's."""
FACE_COLUMNS = ("face", "box_x", "box_y", "box_w", "box_h", "det_score", "region", *EYE_COLUMNS)
"""Id columns added per row when faces are detected (``region``: ``face`` or ``whole_image``)."""


class FaceMode(str, Enum):
    detect = "detect"
    none = "none"
    auto = "auto"


PORTRAIT_MAX_ASPECT = 1.5
"""``auto`` treats an image as a close-up portrait when its sides differ by at most this ratio…"""
PORTRAIT_MAX_SIDE = 1200
"""…and its long side is at most this many pixels (crops, dataset images, avatars; not phone photos)."""


def looks_like_portrait(image: Image.Image) -> bool:
    """Whether an image with no detected face is plausibly already a face crop (near-square, small)."""
    width, height = image.size
    return max(width, height) / max(1, min(width, height)) <= PORTRAIT_MAX_ASPECT and max(width, height) <= (
        PORTRAIT_MAX_SIDE
    )


@dataclass
class Region:
    """One thing to score: the crop (``None`` when nothing is scored) and its id columns."""

    image: Image.Image | None
    ids: dict[str, object]


def _empty_ids() -> dict[str, object]:
    return dict.fromkeys(("face", "box_x", "box_y", "box_w", "box_h", "det_score", *EYE_COLUMNS))


def _eye_ids(face: Face) -> dict[str, object]:
    if face.eyes is None:
        return dict.fromkeys(EYE_COLUMNS)
    return {column: round(value, 1) for column, value in zip(EYE_COLUMNS, face.eyes)}


def face_regions(
    image: Image.Image,
    detector: Detector | None,
    mode: FaceMode | str = FaceMode.auto,
    *,
    margin: float = DEFAULT_MARGIN,
    align: bool = False,
) -> list[Region]:
    """Regions of ``image`` to score.

    * ``none``: the whole image, no face columns.
    * ``detect``: one square crop per detected face; no face → one row with empty ``face`` and no
      crop, so that the input still appears in the output.
    * ``auto``: as ``detect``, but when no face is found and the image looks like a close-up
      portrait the whole image is scored with ``region = whole_image``.

    ``align`` rotates each crop so that the eyes are level (faces without eye landmarks are
    cropped as they are).
    """
    mode = FaceMode(mode)
    if mode is FaceMode.none:
        return [Region(image, {})]
    if detector is None:
        raise ValueError("a detector is needed unless --faces none")
    faces: list[Face] = detector.detect(image)
    regions = [
        Region(
            crop_face(image, face, margin, align=align),
            {
                "face": i,
                "box_x": round(face.box_x, 1),
                "box_y": round(face.box_y, 1),
                "box_w": round(face.box_w, 1),
                "box_h": round(face.box_h, 1),
                "det_score": round(face.score, 4) if math.isfinite(face.score) else None,
                "region": "face",
                **_eye_ids(face),
            },
        )
        for i, face in enumerate(faces)
    ]
    if regions:
        return regions
    if mode is FaceMode.auto and looks_like_portrait(image):
        ids = {**_empty_ids(), "face": 0, "box_x": 0.0, "box_y": 0.0}
        ids.update(box_w=float(image.width), box_h=float(image.height), region="whole_image")
        return [Region(image, ids)]
    return [Region(None, {**_empty_ids(), "region": None})]
