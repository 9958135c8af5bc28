"""Where a crop the encoder saw lies in its picture, so that its map can be drawn back over the photo
(pictures, the page)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from emonet_face.explain.table import ExplainedCrop
from emonet_face.faces import DEFAULT_MARGIN, EYE_COLUMNS, Face, crop_placement

__all__ = ["Placement", "placement_for"]


@dataclass(frozen=True)
class Placement:
    """Where a crop the encoder saw lies in its picture: centre, size, and the degrees the picture
    was turned (counter-clockwise) before cropping (``--align``)."""

    cx: float
    cy: float
    width: float
    height: float
    angle: float = 0.0


def placement_for(
    crop: ExplainedCrop, size: tuple[int, int], margin: float = DEFAULT_MARGIN, align: bool = False
) -> Placement:
    """The crop's placement from its id columns: a face's square (as :func:`~emonet_face.faces.crop_face`
    cut it), or the whole picture."""
    ids = crop.ids
    box_columns = ("box_x", "box_y", "box_w", "box_h")
    box = [ids.get(c) for c in box_columns]
    if ids.get("region") != "face" or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in box):
        return Placement(size[0] / 2, size[1] / 2, size[0], size[1])
    x, y, w, h = (float(ids[c]) for c in box_columns)
    eyes = [ids.get(c) for c in EYE_COLUMNS]
    known = all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in eyes)
    face_eyes: tuple[float, float, float, float] | None = None
    if known:
        left_x, left_y, right_x, right_y = (float(ids[c]) for c in EYE_COLUMNS)
        face_eyes = (left_x, left_y, right_x, right_y)
    face = Face(x, y, w, h, score=1.0, eyes=face_eyes)
    cx, cy, side, angle = crop_placement(size, face, margin, align=align)
    return Placement(cx, cy, side, side, angle)
