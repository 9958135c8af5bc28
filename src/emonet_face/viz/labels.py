"""Where a face's label goes in a picture: beside its box, inside the picture, over no other label
and no face where the picture has room (``--save-vis`` / ``plot`` overviews; the served page's
``drawFaces`` in serve/static/app.js follows the same rules in the browser)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LabelSpot", "Rect", "overlap", "place_labels"]

Rect = tuple[float, float, float, float]
"""``(x, y, w, h)`` in image pixels, y downwards."""

LABEL_WEIGHT = 10.0
"""Covering another label costs this many times more than covering a face by the same area."""


@dataclass(frozen=True)
class LabelSpot:
    """One face's label: which of its sizes was chosen (0: the first, fullest) and where it lies."""

    choice: int
    rect: Rect
    cost: float
    """Area over other labels (× :data:`LABEL_WEIGHT`) and over faces: 0 where it covers nothing."""


def overlap(a: Rect, b: Rect) -> float:
    """The area two rectangles share (0 when they only touch)."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _candidates(box: Rect | None, w: float, h: float, gap: float) -> list[tuple[float, float]]:
    """Top-left corners to try, best first: under the box, over it, beside it; a whole-image score's
    label goes into the picture's top-left corner."""
    if box is None:
        return [(gap, gap)]
    x, y, bw, bh = box
    below, above, centre = y + bh + gap, y - h - gap, x + bw / 2 - w / 2
    return [(x, below), (centre, below), (x, above), (centre, above), (x + bw + gap, y), (x - w - gap, y)]


def _best_spot(box: Rect | None, size: tuple[float, float], placed: list[Rect], faces: list[Rect],
               width: float, height: float, gap: float) -> tuple[Rect, float]:  # fmt: skip
    """The cheapest candidate spot for a label of ``size``, moved inside the picture."""
    w, h = min(size[0], width), min(size[1], height)
    tried = []
    for sx, sy in _candidates(box, w, h, gap):
        rect = (min(max(0.0, sx), width - w), min(max(0.0, sy), height - h), w, h)
        cost = LABEL_WEIGHT * sum(overlap(rect, p) for p in placed) + sum(overlap(rect, f) for f in faces)
        if cost == 0:
            return rect, 0.0
        tried.append((rect, cost))
    return min(tried, key=lambda t: t[1])


def place_labels(
    boxes: Sequence[Rect | None],
    sizes: Sequence[Sequence[tuple[float, float]]],
    width: float,
    height: float,
    *,
    gap: float = 3.0,
) -> list[LabelSpot]:
    """Place one label per face: first every face's smallest label (so that a crowded picture has
    room for each face's), in the order given, each where it covers least; then each label grows
    to its fullest size (e.g. three emotions rather than the top one) that finds a spot covering no
    other label and no face. Labels always lie inside the picture (a label larger than the picture
    is cut to it: make it smaller first).

    Args:
        boxes: each face's box, ``None`` for a whole-image score.
        sizes: each face's label sizes ``(w, h)`` in image pixels, best first (at least one).
        width: the picture's width in pixels.
        height: the picture's height in pixels.
        gap: pixels between a box and its label.

    Returns:
        One :class:`LabelSpot` per face, in the order of ``boxes``.
    """
    faces = [box for box in boxes if box is not None]
    spots: list[LabelSpot] = []
    for box, options in zip(boxes, sizes, strict=True):  # first every face's smallest label…
        rect, cost = _best_spot(box, options[-1], [s.rect for s in spots], faces, width, height, gap)
        spots.append(LabelSpot(len(options) - 1, rect, cost))
    for i, (box, options) in enumerate(zip(boxes, sizes)):  # …then each grows where it covers nothing
        others = [s.rect for j, s in enumerate(spots) if j != i]
        for choice, size in enumerate(options[:-1]):
            rect, cost = _best_spot(box, size, others, faces, width, height, gap)
            if cost == 0:
                spots[i] = LabelSpot(choice, rect, cost)
                break
    return spots
