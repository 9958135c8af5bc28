"""The explanation table: one row per (input, face, emotion), and which emotions a face gets.

Columns: the input's id columns (``path``; ``key`` and the carried ``.json`` fields for shard
samples; ``frame``/``time`` for video), ``face`` (the face number; null for a whole-image row),
``emotion`` (head key), ``method``, ``grid_rows``, ``grid_cols``, ``saliency`` (``grid_rows ×
grid_cols`` floats, row-major over the encoder's patch grid of the crop it saw; positive = the
patch raises the emotion's neutral-centred score), ``score`` (that centred score, as ``predict``
reports it) and ``error`` (why an input has no rows to explain; null otherwise). An input without
a face keeps one row with empty ``emotion`` and ``saliency``, so that every input appears.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from emonet_face import taxonomy as tx
from emonet_face.errors import InputError
from emonet_face.faces import FACE_COLUMNS

__all__ = [
    "EXPLAIN_COLUMNS",
    "ExplainedCrop",
    "ExplainedImage",
    "explanation_table",
    "parse_emotions",
    "ranked_emotions",
]

EXPLAIN_COLUMNS = ("emotion", "method", "grid_rows", "grid_cols", "saliency", "score", "error")
"""The columns after the id columns (``path`` …, ``face``), in this order."""
_DROPPED_IDS = frozenset(FACE_COLUMNS) - {"face"}
"""Face id columns ``predict`` writes that the explanation table leaves out (boxes, eyes, detector score):
the map is over the crop, and the crop is named by ``face``."""


def parse_emotions(spec: str | Sequence[str], keys: Sequence[str]) -> list[str]:
    """``"bitterness,Awe"`` or ``["bitterness", "Awe"]`` → head keys (any spelling :func:`~emonet_face.taxonomy.resolve_emotion`
    accepts), in the order given, without repeats; an unknown one is a one-line :class:`InputError`."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    if not names:
        raise InputError("--emotions: name at least one emotion (head keys such as bitterness,awe)")
    out: list[str] = []
    for name in names:
        try:
            key = tx.resolve_emotion(name).key
        except KeyError:
            key = name if name in keys else ""
        if key not in keys:
            raise InputError(
                f"--emotions {name}: not a head of this model; use head keys such as {', '.join(keys[:3])}"
            )
        if key not in out:
            out.append(key)
    return out


def ranked_emotions(centred: np.ndarray, keys: Sequence[str], top: int) -> list[str]:
    """The ``top`` emotions of one row of centred scores, ranked as ``predict``'s ``top1..top3``
    (:func:`emonet_face.outputs.build_score_table`: descending centred score over the 40 emotions,
    ties in head order)."""
    index = [i for i, k in enumerate(keys) if k in tx.EMOTION_KEYS]
    order = np.argsort(-np.asarray(centred, dtype=np.float64)[index], kind="stable")[:top]
    return [keys[index[i]] for i in order]


@dataclass
class ExplainedCrop:
    """One crop the encoder saw (a face, or a whole image) and its maps."""

    ids: dict[str, Any]
    """Every id column of the row as ``predict`` builds it (boxes and eyes included: pictures need them)."""
    crop: Image.Image | None
    emotions: list[str] = field(default_factory=list)
    maps: np.ndarray | None = None
    """``(len(emotions), grid_rows, grid_cols)`` float32."""
    scores: list[float] = field(default_factory=list)
    """Each emotion's neutral-centred score."""
    error: str | None = None

    def rows(self, method: str) -> list[dict[str, Any]]:
        """This crop's table rows: one per emotion, or one without an emotion (no face, an error)."""
        ids = {k: v for k, v in self.ids.items() if k not in _DROPPED_IDS}
        whole = self.ids.get("region") != "face"
        ids["face"] = None if whole or self.ids.get("face") is None else int(self.ids["face"])
        if self.maps is None or not self.emotions:
            return [{**ids, **dict.fromkeys(EXPLAIN_COLUMNS), "error": self.error}]
        rows, cols = self.maps.shape[1:]
        return [
            {
                **ids,
                "emotion": key,
                "method": method,
                "grid_rows": int(rows),
                "grid_cols": int(cols),
                "saliency": saliency.reshape(-1).astype(np.float32),
                "score": float(score),
                "error": None,
            }
            for key, saliency, score in zip(self.emotions, self.maps, self.scores)
        ]


@dataclass
class ExplainedImage:
    """One decoded picture (a photo, a video frame, a shard sample) with its explained crops."""

    ids: dict[str, Any]
    image: Image.Image | None
    crops: list[ExplainedCrop]
    method: str

    def rows(self) -> list[dict[str, Any]]:
        """The table rows of every crop, in order."""
        return [row for crop in self.crops for row in crop.rows(self.method)]


def explanation_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The table for rows of :meth:`ExplainedImage.rows`: id columns (``path`` first, ``face``
    last), then :data:`EXPLAIN_COLUMNS`."""
    if not rows:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in ("path", "face", *EXPLAIN_COLUMNS)})
    table = pd.DataFrame.from_records(rows)
    ids = [c for c in table.columns if c not in EXPLAIN_COLUMNS and c != "face"]
    table = table[[*ids, "face", *EXPLAIN_COLUMNS]]
    table["face"] = table["face"].astype("Int64")
    for column in ("grid_rows", "grid_cols"):
        table[column] = table[column].astype("Int64")
    return table
