"""Portrait crops like the training data: the heads were trained on close-up portraits where one
frontal face fills a square frame, so each detected face becomes a square crop around it."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from emonet_face.faces.base import Face

__all__ = ["DEFAULT_MARGIN", "crop_face", "crop_placement", "eye_angle", "square_box"]

DEFAULT_MARGIN = 0.4
"""Extra context on each side, as a fraction of the face box's longer side. Frontal detectors
return tight eyebrow-to-chin boxes; 0.4 makes the square 1.8× the box, which shows the whole head
with hair and a little neck, as in the EmoNet-Face portraits."""


def square_box(face: Face, margin: float = DEFAULT_MARGIN) -> tuple[int, int, int]:
    """(left, top, side) of the square centred on the face box, ``margin`` × box side added on each side."""
    if margin < 0:
        raise ValueError(f"--margin {margin}: must be 0 or more (a fraction of the face box side)")
    side = max(1, round(max(face.box_w, face.box_h) * (1.0 + 2.0 * margin)))
    cx, cy = face.box_x + face.box_w / 2.0, face.box_y + face.box_h / 2.0
    return round(cx - side / 2.0), round(cy - side / 2.0), side


def eye_angle(face: Face) -> float | None:
    """Degrees to rotate the image counter-clockwise (PIL's ``rotate``) so the eyes are level;
    ``None`` without eye landmarks."""
    if face.eyes is None:
        return None
    left_x, left_y, right_x, right_y = face.eyes
    # the person's right eye is on the image's left in an upright face: the eye line runs right → left
    return math.degrees(math.atan2(left_y - right_y, left_x - right_x))


def crop_face(image: Image.Image, face: Face, margin: float = DEFAULT_MARGIN, *, align: bool = False) -> Image.Image:
    """The square crop around ``face``; never dropped at the border.

    ``align``: rotate around the face centre so that the eyes are level (needs eye landmarks); a
    crop √2 larger is rotated, then its centre kept, so no corner is left empty.

    Near a border the square is first shifted inside the image (real pixels beat padding, and the
    face stays whole); only when the square is larger than the image's short side is the missing
    part padded by repeating the edge pixels (no black bars, which the heads never saw).
    """
    angle = _turn(face, align)
    if angle:
        _, _, side = square_box(face, margin)
        big = math.ceil(side * math.sqrt(2)) + 2
        cx, cy = face.box_x + face.box_w / 2.0, face.box_y + face.box_h / 2.0
        outer = _crop_square(image, round(cx - big / 2), round(cy - big / 2), big, shift=False)
        turned = outer.rotate(angle, resample=Image.Resampling.BICUBIC)
        inset = (turned.width - side) / 2
        return turned.crop((round(inset), round(inset), round(inset) + side, round(inset) + side))
    return _crop_square(image, *square_box(face, margin), shift=True)


def crop_placement(
    size: tuple[int, int], face: Face, margin: float = DEFAULT_MARGIN, *, align: bool = False
) -> tuple[float, float, int, float]:
    """Where :func:`crop_face`'s crop lies in an image of ``size`` (width, height): its centre
    ``(x, y)``, side, and the degrees the image was turned (counter-clockwise) before cropping, so
    that something drawn over the crop (an explanation map) can be put back over the photo."""
    _, _, side = square_box(face, margin)
    angle = _turn(face, align)
    if angle:
        big = math.ceil(side * math.sqrt(2)) + 2
        cx, cy = face.box_x + face.box_w / 2.0, face.box_y + face.box_h / 2.0
        return round(cx - big / 2) + big / 2, round(cy - big / 2) + big / 2, side, angle
    left, top = _shifted(size, *square_box(face, margin))
    return left + side / 2, top + side / 2, side, 0.0


def _turn(face: Face, align: bool) -> float:
    """Degrees :func:`crop_face` turns the image by: 0 unless aligning a face that is tilted ≥ 1°."""
    angle = eye_angle(face) if align else None
    return angle if angle is not None and abs(angle) >= 1.0 else 0.0


def _shifted(size: tuple[int, int], left: int, top: int, side: int) -> tuple[int, int]:
    """The square's corner moved inside the image along each axis the square fits in."""
    width, height = size
    if side <= width:
        left = min(max(left, 0), width - side)
    if side <= height:
        top = min(max(top, 0), height - side)
    return left, top


def _crop_square(image: Image.Image, left: int, top: int, side: int, *, shift: bool) -> Image.Image:
    """The square, first shifted inside the image if ``shift`` and it fits, the rest edge-padded."""
    width, height = image.size
    if shift:
        left, top = _shifted(image.size, left, top, side)
    right, bottom = left + side, top + side
    if left >= 0 and top >= 0 and right <= width and bottom <= height:
        return image.crop((left, top, right, bottom))
    inner = np.asarray(image.crop((max(left, 0), max(top, 0), min(right, width), min(bottom, height))))
    pad = (
        (max(0, -top), max(0, bottom - height)),
        (max(0, -left), max(0, right - width)),
        (0, 0),
    )
    return Image.fromarray(np.pad(inner, pad[: inner.ndim], mode="edge"))
