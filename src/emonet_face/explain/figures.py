"""Pictures of explanation maps: per crop and emotion the map over the crop, per picture the top
emotion's map inside each face's crop square. Red: the patch raises the emotion's centred score;
blue: it lowers it; the stronger the colour, the larger the effect (a colour bar gives the scale,
in centred-score units). Maps are drawn as the encoder's patches (blocks), not smoothed: that is
their resolution.

Matplotlib is imported here only; the package imports this module only when pictures are asked for.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from emonet_face import taxonomy as tx
from emonet_face.explain.placement import Placement, placement_for
from emonet_face.explain.table import ExplainedImage
from emonet_face.faces import DEFAULT_MARGIN

__all__ = ["CMAP", "MapPictureWriter", "Placement", "crop_map_figure", "picture_map_figure", "placement_for"]

CMAP = "RdBu_r"
"""Diverging, colour-blind safe: red raises the score, blue lowers it, white leaves it."""
MAX_SIDE = 1600
"""Long side of a picture's drawing in pixels (larger photos are shown shrunk)."""


def _safe(text: str) -> str:
    """A file-name-safe form of a head key or sample key (``jealousy_&_envy`` → ``jealousy___envy``)."""
    return re.sub(r"[^\w\-]+", "_", text)


def _limit(maps: Sequence[np.ndarray]) -> float:
    peak = max((float(np.nanmax(np.abs(m))) for m in maps if m.size), default=0.0)
    return peak if peak > 0 else 1e-9


def _overlay(saliency: np.ndarray, size: tuple[float, float], limit: float) -> Image.Image:
    """The map as an RGBA picture of ``size``: diverging colours, opacity growing with the effect."""
    norm = np.clip(saliency / limit, -1.0, 1.0)
    rgba = colormaps[CMAP]((norm + 1.0) / 2.0)
    rgba[..., 3] = 0.15 + 0.65 * np.abs(norm)
    small = Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA")
    return small.resize((max(1, round(size[0])), max(1, round(size[1]))), Image.Resampling.NEAREST)


def _colour_bar(fig: Figure, axes, limit: float, label: str) -> None:
    bar = fig.colorbar(ScalarMappable(Normalize(-limit, limit), CMAP), ax=axes, fraction=0.046, pad=0.03)
    bar.set_label(label)


def _name(key: str) -> str:
    try:
        return tx.resolve_emotion(key).name
    except KeyError:
        return key


def crop_map_figure(
    crop: Image.Image, saliency: np.ndarray, *, emotion: str, score: float, method: str, title: str = ""
) -> Figure:
    """The crop, and the crop under its map for one emotion, with the colour scale."""
    rows, cols = saliency.shape
    limit = _limit([saliency])
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 4.2))
    for ax in (left, right):
        ax.imshow(crop)
        ax.set_axis_off()
    right.imshow(_overlay(saliency, crop.size, limit))
    for r in range(1, rows):
        right.axhline(r * crop.height / rows - 0.5, color="white", lw=0.3, alpha=0.5)
    for c in range(1, cols):
        right.axvline(c * crop.width / cols - 0.5, color="white", lw=0.3, alpha=0.5)
    left.set_title("crop the encoder saw", fontsize=9)
    right.set_title(f"{_name(emotion)} (score {score:+.2f}) · {method}", fontsize=9)
    _colour_bar(fig, [left, right], limit, f"effect on the {_name(emotion)} score\n(red raises, blue lowers)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def picture_map_figure(
    image: Image.Image, faces: Sequence[tuple[Placement, np.ndarray, str]], *, title: str = "", method: str = ""
) -> Figure:
    """The picture with each face's map (``(placement, saliency, label)``) inside its crop square."""
    limit = _limit([s for _, s, _ in faces])
    canvas = image.convert("RGBA")
    for place, saliency, _ in faces:
        layer = _overlay(saliency, (place.width, place.height), limit)
        if place.angle:
            layer = layer.rotate(-place.angle, resample=Image.Resampling.NEAREST, expand=True)
        _paste_clipped(canvas, layer, place)
    scale = min(1.0, MAX_SIDE / max(image.size))
    width_in = max(5.0, image.width * scale / 100)
    fig, ax = plt.subplots(figsize=(width_in + 1.4, max(3.0, image.height * scale / 100) + 0.6))
    ax.imshow(canvas)
    ax.set_axis_off()
    for place, _, label in faces:
        if place.width < image.width or place.height < image.height:
            ax.add_patch(
                Rectangle(
                    (place.cx - place.width / 2, place.cy - place.height / 2),
                    place.width,
                    place.height,
                    fill=False,
                    lw=1.0,
                    ec="black",
                    ls="--",
                )
            )
        ax.text(
            place.cx - place.width / 2,
            place.cy - place.height / 2 - 4,
            label,
            fontsize=8,
            va="bottom",
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 1.5},
        )
    _colour_bar(fig, ax, limit, "effect on the emotion's score\n(red raises, blue lowers)")
    ax.set_title(" · ".join(t for t in (title, method and f"top emotion per face, {method}") if t), fontsize=10)
    return fig


def _paste_clipped(canvas: Image.Image, layer: Image.Image, place: Placement) -> None:
    """Composite ``layer`` centred on the placement, cutting off what falls outside the canvas."""
    left, top = round(place.cx - layer.width / 2), round(place.cy - layer.height / 2)
    box = (max(0, -left), max(0, -top), min(layer.width, canvas.width - left), min(layer.height, canvas.height - top))
    if box[2] > box[0] and box[3] > box[1]:
        canvas.alpha_composite(layer.crop(box), (max(0, left), max(0, top)))


class MapPictureWriter:
    """Writes the pictures of explained pictures into ``folder``: ``<name>.face<N>.<emotion>.png`` per
    crop and emotion (``<name>.<emotion>.png`` for a whole-image crop), ``<name>.png`` per picture;
    ``<name>`` is the input's file stem (+ ``.<key>`` for a shard sample, ``.frame<N>`` for a video
    frame), made unique per input path. ``margin``/``align``: the face crop options of the run."""

    def __init__(
        self, folder: str | Path, *, margin: float = DEFAULT_MARGIN, align: bool = False, dpi: int = 100
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.margin = margin
        self.align = align
        self.dpi = dpi
        self._stems: dict[str, str] = {}
        self.written: list[Path] = []

    def _stem(self, path: str) -> str:
        if path not in self._stems:
            stem = re.sub(r"[^\w.\-]+", "_", Path(path).stem) or "picture"
            if stem in self._stems.values():
                stem = f"{stem}-{hashlib.sha1(path.encode()).hexdigest()[:6]}"
            self._stems[path] = stem
        return self._stems[path]

    def _name(self, ids: dict) -> str:
        name = self._stem(str(ids.get("path", "picture")))
        if ids.get("key") is not None:
            name += "." + _safe(str(ids["key"]))
        if ids.get("frame") is not None and not (isinstance(ids["frame"], float) and math.isnan(ids["frame"])):
            name += f".frame{int(ids['frame'])}"
        return name

    def _save(self, fig: Figure, name: str) -> Path:
        path = self.folder / f"{name}.png"
        fig.savefig(path, dpi=self.dpi, bbox_inches="tight")
        plt.close(fig)
        self.written.append(path)
        return path

    def add(self, explained: ExplainedImage) -> list[Path]:
        """The pictures of one explained picture (none when nothing in it was explained)."""
        done = [(c, c.crop, c.maps) for c in explained.crops if c.maps is not None and c.crop is not None and c.emotions]
        if not done:
            return []
        base = self._name(explained.ids)
        written = []
        title_base = str(explained.ids.get("path", ""))
        if explained.ids.get("time") is not None:
            title_base += f" · {float(explained.ids['time']):.2f} s"
        for crop, picture, maps in done:
            face = crop.ids.get("face") if crop.ids.get("region") == "face" else None
            prefix = base if face is None else f"{base}.face{int(face)}"
            for key, saliency, score in zip(crop.emotions, maps, crop.scores):
                title = title_base + ("" if face is None else f" · face {int(face)}")
                fig = crop_map_figure(picture, saliency, emotion=key, score=score, method=explained.method, title=title)
                written.append(self._save(fig, f"{prefix}.{_safe(key)}"))
        if explained.image is not None:
            faces = []
            for crop, _, maps in done:
                face = crop.ids.get("face") if crop.ids.get("region") == "face" else None
                label = _name(crop.emotions[0]) if face is None else f"face {int(face)}: {_name(crop.emotions[0])}"
                faces.append((placement_for(crop, explained.image.size, self.margin, self.align), maps[0], label))
            fig = picture_map_figure(explained.image, faces, title=title_base, method=explained.method)
            written.append(self._save(fig, base))
        return written
