"""Pictures from score rows (a saved table or rows just scored by ``predict --save-vis``): per
image an overview PNG, per face a bar chart, per video a timeline. File names come from the input
file's stem (plus ``.frame<N>`` for video frames), made unique within one output folder."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from emonet_face import taxonomy as tx
from emonet_face.errors import EmoNetError
from emonet_face.inputs.video import iter_video_frames
from emonet_face.viz.charts import FaceScores, face_bar_chart, image_overview, timeline_chart

__all__ = ["PictureWriter", "face_scores", "main_face_rows"]

_EXTRA_RAW = {f"raw.{k}" for k in tx.EXTRA_KEYS}


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def face_scores(row: pd.Series) -> FaceScores | None:
    """The picture data of one score row; ``None`` when the row has no scores (no face, error)."""
    probs = {key: _number(row.get(f"prob.{key}")) for key in tx.EMOTION_KEYS}
    if all(v is None for v in probs.values()):
        return None
    extras = {}
    for key in tx.EXTRA_KEYS:
        extras[key] = _number(row.get(f"raw.{key}", row.get(key)))
    x, y, w, h = (_number(row.get(c)) for c in ("box_x", "box_y", "box_w", "box_h"))
    face = _number(row.get("face"))
    track = _number(row.get("track"))
    region = row.get("region")
    label = ""
    if face is not None:
        label = "whole image" if region == "whole_image" else f"face {int(face)}"
        if track is not None:
            label += f" · track {int(track)}"
    return FaceScores(
        probs={k: v for k, v in probs.items() if v is not None},
        extras={k: v for k, v in extras.items() if v is not None},
        box=None if x is None or y is None or w is None or h is None or region == "whole_image" else (x, y, w, h),
        label=label,
    )


def smooth_series(times: list[float], values: list[float], seconds: float) -> list[float]:
    """Centred moving average over a window of ``seconds`` (by time, so uneven sampling is fine);
    NaN values are left out of the means. ``seconds <= 0`` returns the values unchanged."""
    import numpy as np

    if seconds <= 0 or not values:
        return values
    t = np.asarray(times, float)
    v = np.asarray(values, float)
    order = np.argsort(t, kind="stable")
    ts, vs = t[order], v[order]
    ok = ~np.isnan(vs)
    sums = np.concatenate([[0.0], np.cumsum(np.where(ok, vs, 0.0))])
    counts = np.concatenate([[0], np.cumsum(ok)])
    lo = np.searchsorted(ts, ts - seconds / 2, side="left")
    hi = np.searchsorted(ts, ts + seconds / 2, side="right")
    n = counts[hi] - counts[lo]
    means = np.where(n > 0, (sums[hi] - sums[lo]) / np.maximum(n, 1), np.nan)
    out = np.empty_like(means)
    out[order] = means
    return out.tolist()


def main_face_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per video frame: the largest scored face (used when the rows carry no ``track``)."""
    scored = rows[rows[[f"prob.{k}" for k in tx.EMOTION_KEYS if f"prob.{k}" in rows]].notna().any(axis=1)]
    if scored.empty:
        return scored
    if {"box_w", "box_h"} <= set(scored.columns):
        area = pd.to_numeric(scored["box_w"], errors="coerce").fillna(0) * pd.to_numeric(
            scored["box_h"], errors="coerce"
        ).fillna(0)
        # Frame first, then the larger box: sorted by position, not through a helper column (a table
        # read from CSV holds one block per column, and adding one made pandas warn on every plot).
        frames = pd.to_numeric(scored["frame"], errors="coerce").to_numpy(dtype=float)
        scored = scored.iloc[np.lexsort((-area.to_numpy(dtype=float), frames))]
    return scored.drop_duplicates("frame").sort_values("time")


_NO_IMAGE = Image.new("RGB", (1, 1))
"""Sentinel: do not try to load the picture (e.g. a video frame that could not be decoded)."""


class PictureWriter:
    """Writes the PNGs of ``--save-vis DIR`` / ``emonet-face plot --out DIR``."""

    def __init__(
        self, out_dir: str | Path, *, load: Callable[[str], Image.Image] | None = None, smooth: float = 0.0
    ) -> None:
        self.smooth = smooth
        """Timelines only: centred moving average over this many seconds (the tables stay raw)."""
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._names: dict[str, str] = {}
        self._load = load
        self.written: list[Path] = []
        self._video_rows: list[pd.DataFrame] = []

    def name_for(self, path: str) -> str:
        """A readable, unique file stem for an input path."""
        if path not in self._names:
            stem = re.sub(r"[^\w.-]+", "_", Path(path).stem) or "image"
            if stem in self._names.values():
                stem = f"{stem}-{hashlib.sha1(path.encode()).hexdigest()[:6]}"
            self._names[path] = stem
        return self._names[path]

    def _save(self, fig, name: str) -> Path:
        import matplotlib.pyplot as plt

        target = self.out_dir / f"{name}.png"
        fig.savefig(target, bbox_inches="tight")
        plt.close(fig)
        self.written.append(target)
        return target

    def image(self, path: str, rows: pd.DataFrame, image: Image.Image | None = None) -> list[Path]:
        """Overview and per-face charts for the rows of one image (or one video frame)."""
        first = rows.iloc[0]
        frame = _number(first.get("frame")) if "frame" in rows else None
        stem = self.name_for(path) + (f".frame{int(frame):06d}" if frame is not None else "")
        seconds = _number(first.get("time")) if frame is not None else None
        when = f" t={seconds:.2f}s" if seconds is not None else ""
        # (the row's `face` number, its picture data): file names and labels use the table's numbers
        faces = [(_number(row.get("face")), fs) for _, row in rows.iterrows() if (fs := face_scores(row)) is not None]
        out: list[Path] = []
        if image is _NO_IMAGE:
            image = None
        elif image is None and self._load is not None:
            try:
                image = self._load(path)
            except Exception:  # the picture is a bonus: a moved or unreadable image only skips it
                image = None
        if image is not None:
            title = f"{Path(path).name}{when}" + ("" if faces else " — no face found")
            out.append(self._save(image_overview(image, [fs for _, fs in faces], title), stem))
        for face, fs in faces:
            suffix = f".face{int(face)}" if face is not None and fs.label.startswith("face") else ""
            title = f"{Path(path).name}{when}" + (f" — {fs.label}" if fs.label else "")
            out.append(self._save(face_bar_chart(fs, title), f"{stem}{suffix}.bars"))
        return out

    def _video_images(self, path: str, frames: set[int]):
        """Decode the wanted frames of a video in one streaming pass (no seeking)."""

        if self._load is None or not Path(path).is_file() or not frames:
            return
        last = max(frames)
        try:
            for item in iter_video_frames(path, fps=None):
                if item.frame in frames:
                    yield item.frame, item.image
                if item.frame >= last:
                    return
        except EmoNetError:
            return

    def timeline(self, path: str, rows: pd.DataFrame) -> list[Path]:
        """Top emotions and the extra dimensions over time: one timeline per face track, or (rows
        without ``track``) one for the largest face per frame."""
        tracked = "track" in rows and pd.to_numeric(rows["track"], errors="coerce").notna().any()
        if tracked:
            track_ids = pd.to_numeric(rows["track"], errors="coerce")
            parts = [
                (f".track{int(t)}", f"track {int(t)}", main_face_rows(rows[track_ids == t]))
                for t in sorted(track_ids.dropna().unique())
            ]
        else:
            parts = [("", "largest face per frame", main_face_rows(rows))]
        out = []
        smoothed = f", smoothed over {self.smooth:g} s" if self.smooth > 0 else ""
        for suffix, what, main in parts:
            if main.empty:
                continue
            times = pd.to_numeric(main["time"], errors="coerce").tolist()

            def series(column: str, times: list[float] = times, main: pd.DataFrame = main) -> list[float]:
                return smooth_series(times, pd.to_numeric(main[column], errors="coerce").tolist(), self.smooth)

            probs = {k: series(f"prob.{k}") for k in tx.EMOTION_KEYS if f"prob.{k}" in main}
            extras = {}
            for k in tx.EXTRA_KEYS:  # the dimensions on their own scale: raw head outputs
                column = f"raw.{k}" if f"raw.{k}" in main else k
                if column in main:
                    extras[k] = series(column)
            title = f"{Path(path).name}: top emotions over time ({what}{smoothed})"
            fig = timeline_chart(times, probs, title=title, extras=extras or None)
            out.append(self._save(fig, f"{self.name_for(path)}{suffix}.timeline"))
        return out

    def follow(self, batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """Pass score batches through, drawing still images as their rows arrive (after the batch
        is handed on, so pictures never delay writing scores); video rows are kept (id and
        probability columns only) until :meth:`finish`, which needs all of a video's frames."""
        for batch in batches:
            yield batch
            is_frame = batch["frame"].notna() if "frame" in batch else pd.Series(False, index=batch.index)
            stills = batch[~is_frame]
            if len(stills):
                self.table(stills)
            if is_frame.any():
                keep = [c for c in batch.columns if not (c in tx.HEAD_KEYS or c.startswith("raw.")) or c in _EXTRA_RAW]
                self._video_rows.append(batch.loc[is_frame, keep])

    def finish(self) -> list[Path]:
        """Write the pictures of the videos seen by :meth:`follow`."""
        if self._video_rows:
            self.table(pd.concat(self._video_rows, ignore_index=True))
            self._video_rows = []
        return self.written

    def table(self, table: pd.DataFrame) -> list[Path]:
        """All pictures for a score table: per image / frame, plus a timeline per video."""
        if "path" not in table:
            raise KeyError("path")
        is_video = "frame" in table and table["frame"].notna().any()
        for path, rows in table.groupby("path", sort=False):
            path = str(path)
            if is_video and rows["frame"].notna().any():
                by_frame = {int(f): r for f, r in rows.groupby("frame", sort=True)}
                for frame, image in self._video_images(path, set(by_frame)):
                    self.image(path, by_frame.pop(frame), image)
                for frame_rows in by_frame.values():  # frames whose picture could not be decoded
                    self.image(path, frame_rows, _NO_IMAGE)
                self.timeline(path, rows)
            else:
                self.image(path, rows)
        return self.written
