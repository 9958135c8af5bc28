"""Figures people can read at a glance: the photo with face boxes and top-3 emotions, one bar
chart per face (40 emotions grouped by family, 4 extra dimensions on their own scales), and a
timeline of the top emotions over a video. Matplotlib, Agg backend (no display needed)."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from PIL import Image

from emonet_face import taxonomy as tx
from emonet_face.viz.labels import place_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "FAMILY_COLOURS",
    "FaceScores",
    "face_bar_chart",
    "image_overview",
    "timeline_chart",
    "top_emotions",
]


def pyplot() -> ModuleType:
    """``matplotlib.pyplot``, imported when a picture is first drawn (0.4 s of start-up that runs and
    programs without pictures never pay): on the Agg backend (no display needed) if we import it
    first; a session that already chose a backend keeps it (switching would close its figures)."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

# One colour per family from a colour-blind-safe qualitative palette (Okabe-Ito), in guide order.
_PALETTE = ("#E69F00", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#56B4E9", "#8C6D31", "#999999")
_EXTRA_NAMES = {d.key: d.name for d in tx.EXTRA_DIMENSIONS}
FAMILY_COLOURS: dict[str, str] = {family: _PALETTE[i % len(_PALETTE)] for i, family in enumerate(tx.FAMILIES)}


@dataclass
class FaceScores:
    """What the pictures need about one scored face."""

    probs: Mapping[str, float]
    """Emotion key → probability (softmax over the 40 emotions)."""
    extras: Mapping[str, float]
    """Extra dimension key → value on its own scale (raw head output)."""
    box: tuple[float, float, float, float] | None = None
    """(x, y, w, h) in image pixels, ``None`` for a whole-image score."""
    label: str = ""


def _percent(p: float) -> str:
    """Whole percents, one decimal below 10% (40-way probabilities are often a few percent)."""
    return f"{p:.0%}" if p >= 0.1 else f"{p:.1%}"


def top_emotions(probs: Mapping[str, float], k: int = 3) -> list[tuple[tx.Emotion, float]]:
    """The ``k`` most probable emotions, ignoring missing values."""
    valid = [(key, p) for key, p in probs.items() if p is not None and not math.isnan(p)]
    valid.sort(key=lambda kv: kv[1], reverse=True)
    return [(tx.emotion(key), float(p)) for key, p in valid[:k]]


def image_overview(image: Image.Image, faces: Sequence[FaceScores], title: str = "") -> Figure:
    """The photo with each face's box (coloured by its top emotion's family) and its label (the
    face's number, its top-3 emotions), placed by :func:`~emonet_face.viz.labels.place_labels`:
    inside the picture, over no other label and no face where there is room (else a shorter label:
    the number and top emotion, the number alone; then the spot covering least)."""
    width, height = image.size
    scale = 9.0 / max(width, height)
    fig_w, fig_h = max(4.0, width * scale), max(3.0, height * scale) + 0.4
    plt = pyplot()
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=110)
    share = 0.94 if title else 1.0
    ax = fig.add_axes((0.0, 0.0, 1.0, share))
    ax.imshow(image)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10, y=0.99)
    boxes = [face.box for face in faces]
    for face in faces:
        top = top_emotions(face.probs)
        x, y, w, h = face.box or (0.0, 0.0, float(width), float(height))
        colour = FAMILY_COLOURS[top[0][0].family] if top else "#ffffff"
        ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, edgecolor=colour, linewidth=2.5))
    font = 9 if len(faces) < 6 else 7
    blocks = [_label_blocks(face) for face in faces]
    px = 1 / 72 / min(fig_w / width, fig_h * share / height)  # image pixels per point, as the photo is shown
    measure = _TextWidth(fig)
    fonts = [_fitting_font(block[0], font, width / px, measure) for block in blocks]
    sizes = [[_block_size(lines, fonts[i], px, measure) for lines in block] for i, block in enumerate(blocks)]
    for i, spot in enumerate(place_labels(boxes, sizes, width, height)):
        lines, pad = blocks[i][spot.choice], _PAD * fonts[i] * px
        x, y, w, _ = spot.rect
        # lines start on the side nearer the face: a label pushed left by the picture's edge, or set
        # left of its face, ends under the face rather than beginning under its neighbour
        box = boxes[i]
        right = box is not None and abs(x + w - box[0] - box[2]) < abs(x - box[0])
        for k, (text, box_colour) in enumerate(lines):
            ax.text(
                x + w - pad if right else x + pad, y + pad + k * _LINE * fonts[i] * px, text, fontsize=fonts[i],
                color="white", va="top", ha="right" if right else "left", clip_on=True,
                bbox={"boxstyle": f"round,pad={_PAD}", "facecolor": box_colour, "edgecolor": "none", "alpha": 0.92},
            )  # fmt: skip
    return fig


_LINE = 1.7
"""A label line's height, in font sizes (the text and its box's padding, and a small gap)."""
_PAD = 0.2
"""A label box's padding on each side, in font sizes."""


def _label_blocks(face: FaceScores) -> list[list[tuple[str, str]]]:
    """A face's label as lines ``(text, box colour)``, fullest first: its number and top-3 emotions,
    its number and top emotion, its number alone (a crowded picture: the bar charts name the rest)."""
    head = [(face.label, "#333333")] if face.label else []
    emotions = [(f"{emo.name} {_percent(p)}", FAMILY_COLOURS[emo.family]) for emo, p in top_emotions(face.probs)]
    if not emotions:
        return [[*head, ("no score", "#333333")]]
    return [head + emotions, head + emotions[:1]] + ([head] if head else [])


class _TextWidth:
    """Text widths in points as ``fig``'s renderer draws them (Agg: the same widths as the PNG)."""

    def __init__(self, fig: Figure) -> None:
        self.renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        self.dpi = fig.dpi

    def __call__(self, text: str, size: float) -> float:
        from matplotlib.font_manager import FontProperties

        width = self.renderer.get_text_width_height_descent(text, FontProperties(size=size), ismath=False)[0]
        return width * 72 / self.dpi


def _fitting_font(lines: list[tuple[str, str]], font: float, picture_pt: float, measure: _TextWidth) -> float:
    """``font``, or the size at which the widest line (with its padding) fits the picture's width."""
    widest = max(measure(text, font) for text, _ in lines) + 2 * _PAD * font
    return font if widest <= picture_pt else font * picture_pt / widest


def _block_size(lines: list[tuple[str, str]], font: float, px: float, measure: _TextWidth) -> tuple[float, float]:
    """A label block's ``(w, h)`` in image pixels (``px``: image pixels per point)."""
    widest = max(measure(text, font) for text, _ in lines)
    return (widest + 2 * _PAD * font) * px, len(lines) * _LINE * font * px


def face_bar_chart(face: FaceScores, title: str = "") -> Figure:
    """40 horizontal bars grouped by family (family colours) and the 4 extra dimensions, each on
    its own axis spanning its rating scale (e.g. valence −3…3)."""
    from matplotlib.ticker import PercentFormatter

    plt = pyplot()
    fig = plt.figure(figsize=(9.0, 12.0), dpi=110)
    grid = fig.add_gridspec(2, 1, height_ratios=(40 + 2 * len(tx.FAMILIES), 12), hspace=0.12)
    ax = fig.add_subplot(grid[0])
    labels, values, colours, positions, family_spans = [], [], [], [], []
    pos = 0.0
    for family in tx.FAMILIES:
        members = [e for e in tx.EMOTIONS if e.family == family]
        start = pos
        for emo in members:
            labels.append(emo.name)
            value = face.probs.get(emo.key)
            values.append(0.0 if value is None or math.isnan(value) else float(value))
            colours.append(FAMILY_COLOURS[family])
            positions.append(pos)
            pos += 1.0
        family_spans.append((family, start, pos - 1.0))
        pos += 0.8
    ax.barh(positions, values, color=colours, height=0.8)
    ax.set_yticks(positions, labels, fontsize=8)
    ax.invert_yaxis()
    top = max(values) if values else 0.0
    ax.set_xlim(0, max(0.05, top * 1.25))
    ax.set_xlabel("probability (softmax over the 40 emotions)", fontsize=9)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
    ax.grid(axis="x", alpha=0.3)
    for value, position in zip(values, positions):
        if value >= 0.01:
            ax.text(value, position, f" {_percent(value)}", va="center", fontsize=7)
    for family, start, end in family_spans:
        ax.text(
            1.01, (start + end) / 2, family.replace(" Emotions", ""), transform=ax.get_yaxis_transform(),
            va="center", ha="left", fontsize=8, color=FAMILY_COLOURS[family], fontweight="bold",
        )  # fmt: skip
    if title:
        ax.set_title(title, fontsize=10)
    sub = grid[1].subgridspec(len(tx.EXTRA_DIMENSIONS), 1, hspace=1.6)
    for i, dim in enumerate(tx.EXTRA_DIMENSIONS):
        dax = fig.add_subplot(sub[i])
        value = face.extras.get(dim.key)
        dax.set_xlim(dim.low, dim.high)
        dax.set_ylim(0, 1)
        dax.axhline(0.5, color="#bbbbbb", linewidth=4, zorder=0)
        if value is not None and not math.isnan(value):
            shown = min(max(float(value), dim.low), dim.high)
            dax.plot([shown], [0.5], marker="D", markersize=9, color="#0072B2")
        dax.set_yticks([])
        dax.set_xticks(range(dim.low, dim.high + 1))
        dax.tick_params(labelsize=7)
        shown_value = "n/a" if value is None or math.isnan(value) else f"{float(value):.2f}"
        dax.set_ylabel(f"{dim.name}: {shown_value}", rotation=0, ha="right", va="center", fontsize=8)
        for side in ("top", "right", "left"):
            dax.spines[side].set_visible(False)
    return fig


def timeline_chart(
    times: Sequence[float],
    probs: Mapping[str, Sequence[float]],
    *,
    k: int = 5,
    title: str = "",
    extras: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """Lines for the ``k`` emotions with the highest mean probability over the video; with
    ``extras`` (dimension key → values) a second panel shows the extra dimensions."""
    import numpy as np

    means = {key: float(np.nanmean(vals)) for key, vals in probs.items() if len(vals) and not np.all(np.isnan(vals))}
    chosen = sorted(means, key=means.__getitem__, reverse=True)[:k]
    from matplotlib.ticker import PercentFormatter

    plt = pyplot()
    if extras:
        fig, (ax, ax_extra) = plt.subplots(2, 1, figsize=(10.0, 7.0), dpi=110, sharex=True, height_ratios=(3, 2))
        for i, (key, vals) in enumerate(extras.items()):
            ax_extra.plot(times, vals, marker="o", markersize=3, linewidth=1.5, color=_PALETTE[i % len(_PALETTE)],
                          label=_EXTRA_NAMES.get(key, key))  # fmt: skip
        ax_extra.set_ylabel("extra dimensions (raw)")
        ax_extra.grid(alpha=0.3)
        ax_extra.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        fig, ax = plt.subplots(figsize=(10.0, 4.5), dpi=110)
    styles = ("-", "--", "-.", ":", (0, (5, 1)))  # emotions of one family share a colour: styles tell them apart
    markers = ("o", "s", "^", "D", "v")
    for i, key in enumerate(chosen):
        emo = tx.emotion(key)
        ax.plot(times, probs[key], linestyle=styles[i % len(styles)], marker=markers[i % len(markers)], markersize=4,
                color=FAMILY_COLOURS[emo.family], label=f"{emo.name}", linewidth=1.8)  # fmt: skip
    (ax_extra if extras else ax).set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
    ax.grid(alpha=0.3)
    if chosen:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or f"top {len(chosen)} emotions over time", fontsize=10)
    fig.tight_layout()
    return fig
