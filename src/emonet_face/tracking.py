"""Face tracks in video: one integer ``track`` per person across the sampled frames of a video.

Runs in the main process over score batches in input order (video frames arrive in time order,
segment after segment), next to the SigLIP2 embedding already computed for every face, so it
costs no extra model pass. Between consecutive sampled frames, live tracks and the new faces are
matched by Hungarian assignment (:func:`scipy.optimize.linear_sum_assignment`) on box overlap
(IoU) plus cosine similarity of the embeddings; a pair is allowed only when the boxes overlap
enough, or when the faces look alike and the box has not jumped far (a fast move), so crossing
people keep their ids and a missed detection or two does not split a person. This is the small
piece of SORT-style logic we need; the tracking libraries that fit our dependencies track boxes
only (Kalman motion), which at 1 sampled frame per second helps little, and none use embeddings.

Limits: a person who leaves (or is missed for more than :data:`MAX_MISSES` sampled frames) and
comes back gets a new id; two people who look alike and swap places within one sampling step can
swap ids. ``--resume`` starts new ids above those already in the output and does not link tracks
across the resume point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from emonet_face import taxonomy as tx

__all__ = ["MAX_MISSES", "FaceTracker", "TrackSummary", "box_iou"]

MAX_MISSES = 3
"""Sampled frames a track may go unseen before it ends (3 s at the default 1 frame per second)."""
MIN_IOU = 0.3
"""Boxes overlapping at least this much may be the same person whatever the embedding says
(lighting, expression and pose change the embedding; one sampling step rarely moves a face far)."""
MIN_COSINE = 0.8
"""Faces this alike (embedding cosine) may be the same person after a bigger move…"""
MAX_JUMP = 2.0
"""…as long as the box centre moved at most this many box sides per sampled frame since it was last seen."""
EMBEDDING_MOMENTUM = 0.7
"""A track's embedding is a running mean: new faces update it by ``1 - momentum``."""


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes ``(N, 4)`` × ``(M, 4)`` given as x, y, w, h."""
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(
        np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None
    )
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class _Track:
    id: int
    box: np.ndarray
    embedding: np.ndarray | None
    misses: int = 0


@dataclass
class _VideoState:
    next_id: int = 0
    tracks: list[_Track] = field(default_factory=list)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class FaceTracker:
    """Assigns ``track`` ids to the face rows of videos, batch after batch.

    ``first_ids`` maps a video path to its first free id (``--resume``: above the ids already written).
    """

    def __init__(self, *, max_misses: int = MAX_MISSES, first_ids: Mapping[str, int] | None = None) -> None:
        self.max_misses = max_misses
        self._first_ids = dict(first_ids or {})
        self._videos: dict[str, _VideoState] = {}

    def __call__(self, table: pd.DataFrame, features: np.ndarray) -> pd.DataFrame:
        """``table`` with a ``track`` column (nullable integer; empty for stills, errors, no-face rows).

        ``features``: the embedding of each row ``(N, D)``, NaN rows where nothing was scored.
        """
        tracks = pd.Series(pd.NA, index=table.index, dtype="Int64")
        if "frame" in table.columns and "box_x" in table.columns:
            frames = pd.to_numeric(table["frame"], errors="coerce")
            boxes = table[["box_x", "box_y", "box_w", "box_h"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
            has_box = ~np.isnan(boxes).any(axis=1)
            positions = np.flatnonzero(frames.notna().to_numpy())
            keys = list(zip(table["path"].to_numpy()[positions], frames.to_numpy()[positions]))
            groups: dict[tuple, list[int]] = {}
            for pos, key in zip(positions.tolist(), keys):  # dict keeps first-seen order = time order
                groups.setdefault(key, []).append(pos)
            values = tracks.to_numpy(dtype=object)
            for (path, _), rows in groups.items():  # a frame with no face still counts as a miss
                rows = [pos for pos in rows if has_box[pos]]
                ids = self.update(str(path), boxes[rows].reshape(-1, 4), features[rows])
                for pos, track in zip(rows, ids):
                    values[pos] = track
            tracks = pd.Series(values, index=table.index).astype("Int64")
        at = table.columns.get_loc("top1") if "top1" in table.columns else len(table.columns)
        out = table.copy()
        out.insert(at, "track", tracks)
        return out

    def update(self, path: str, boxes: np.ndarray, embeddings: np.ndarray) -> list[int]:
        """Ids for the faces of the next sampled frame of ``path`` (boxes x, y, w, h; embeddings may hold NaN)."""
        state = self._videos.get(path)
        if state is None:
            state = self._videos[path] = _VideoState(next_id=self._first_ids.get(path, 0))
        embeddings = np.asarray(embeddings, float)
        has_emb = ~np.isnan(embeddings).any(axis=1) if embeddings.ndim == 2 else np.zeros(len(boxes), bool)
        units = [_unit(e) if ok else None for e, ok in zip(embeddings, has_emb)]
        assigned: list[int | None] = [None] * len(boxes)
        if state.tracks and len(boxes):
            score = self._affinity(state.tracks, boxes, units)
            from scipy.optimize import linear_sum_assignment  # on first use: 0.5 s of start-up otherwise

            rows, cols = linear_sum_assignment(-np.nan_to_num(score, nan=-1e6))
            for r, c in zip(rows, cols):
                if math.isfinite(score[r, c]):
                    track = state.tracks[r]
                    assigned[c] = track.id
                    track.box, track.misses = boxes[c], -1  # -1: seen now (+1 below)
                    if units[c] is not None:
                        track.embedding = (
                            units[c]
                            if track.embedding is None
                            else _unit(EMBEDDING_MOMENTUM * track.embedding + (1 - EMBEDDING_MOMENTUM) * units[c])
                        )
        for track in state.tracks:
            track.misses += 1
        state.tracks = [t for t in state.tracks if t.misses <= self.max_misses]
        ids: list[int] = []
        for c, track_id in enumerate(assigned):
            if track_id is None:
                track_id = state.next_id
                state.tracks.append(_Track(state.next_id, boxes[c], units[c]))
                state.next_id += 1
            ids.append(int(track_id))
        return ids

    @staticmethod
    def _affinity(tracks: list[_Track], boxes: np.ndarray, units: list[np.ndarray | None]) -> np.ndarray:
        """Tracks × faces: IoU + cosine where the pair is allowed, NaN where not."""
        old = np.stack([t.box for t in tracks])
        iou = box_iou(old, boxes)
        side = np.maximum(old[:, None, 2:4].max(-1), boxes[None, :, 2:4].max(-1))
        centre_old = old[:, None, :2] + old[:, None, 2:4] / 2
        centre_new = boxes[None, :, :2] + boxes[None, :, 2:4] / 2
        jump = np.linalg.norm(centre_new - centre_old, axis=-1) / np.maximum(side, 1e-6)
        cosine = np.zeros_like(iou)
        known = np.zeros_like(iou, dtype=bool)
        for i, track in enumerate(tracks):
            for j, unit in enumerate(units):
                if track.embedding is not None and unit is not None:
                    cosine[i, j], known[i, j] = float(track.embedding @ unit), True
        steps = np.array([[1.0 + t.misses] for t in tracks])  # an unseen track may have moved further
        allowed = (iou >= MIN_IOU) | (known & (cosine >= MIN_COSINE) & (jump <= MAX_JUMP * steps))
        return np.where(allowed, iou + np.where(known, cosine, 0.0), np.nan)


@dataclass
class _TrackSums:
    """What :class:`TrackSummary` keeps per track: time span, frames seen, scored rows and score sums."""

    sums: pd.Series
    first: float = math.inf
    last: float = -math.inf
    frames: set[int] = field(default_factory=set)
    n: int = 0


class TrackSummary:
    """One row per track (``--tracks-out``): ``path, track, first_time, last_time, n_frames``, the
    mean centred score ``<key>`` and mean probability ``prob.<key>`` of every head, and
    ``top1..top3`` ranked by the mean centred emotion scores (as each row's top-k is).

    Sums are kept per track as batches pass, so memory does not grow with the video's length.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = list(keys)
        self.columns = [*self.keys, *(f"prob.{k}" for k in self.keys if k in tx.EMOTION_KEYS)]
        self._tracks: dict[tuple[str, int], _TrackSums] = {}

    def add(self, table: pd.DataFrame) -> None:
        if "track" not in table.columns or "time" not in table.columns:
            return
        rows = table[pd.to_numeric(table["track"], errors="coerce").notna()]
        columns = [c for c in self.columns if c in rows.columns]
        for (path, track), group in rows.groupby(["path", "track"], sort=False):
            values = group[columns].apply(pd.to_numeric, errors="coerce")
            scored = values.notna().all(axis=1)
            times = pd.to_numeric(group["time"], errors="coerce")
            entry = self._tracks.setdefault((str(path), int(track)), _TrackSums(sums=pd.Series(0.0, index=columns)))
            entry.first = min(entry.first, float(times.min()))
            entry.last = max(entry.last, float(times.max()))
            frames = pd.to_numeric(group["frame"], errors="coerce").dropna().astype(int)
            entry.frames.update(frames)
            entry.n += int(scored.sum())
            entry.sums = entry.sums + values[scored].sum()

    def table(self) -> pd.DataFrame:
        emotion_keys = [k for k in self.keys if k in tx.EMOTION_KEYS]
        records = []
        for (path, track), entry in sorted(self._tracks.items()):
            means = entry.sums / max(entry.n, 1)
            if not entry.n:
                means[:] = math.nan
            ranked = sorted(emotion_keys, key=lambda k: -means.get(k, -math.inf))
            record = {
                "path": path,
                "track": track,
                "first_time": entry.first,
                "last_time": entry.last,
                "n_frames": len(entry.frames),
                **{f"top{i + 1}": (ranked[i] if entry.n and i < len(ranked) else None) for i in range(3)},
                **means.to_dict(),
            }
            records.append(record)
        columns = ["path", "track", "first_time", "last_time", "n_frames", "top1", "top2", "top3", *self.columns]
        return pd.DataFrame.from_records(records, columns=columns)
