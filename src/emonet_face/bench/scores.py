"""Reading model score tables: our ``predict``/``score`` output, or the release's results JSONL.

Our tables have one row per image, a ``path`` (or ``image``) column and one column per head key
holding the neutral-centred score (``raw.<key>`` / ``prob.<key>`` / ``top1..`` columns are ignored).
The release's JSONL rows look like ``{"image_path": ..., "results": {"model_<key>_best":
{"raw", "mean_subtracted", "softmax"}}}``; ``mean_subtracted`` is the centred score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emonet_face.bench.tables import image_id, read_input_table
from emonet_face.errors import InputError
from emonet_face.taxonomy import EMOTION_KEYS, Emotion, resolve_emotion

IMAGE_COLUMNS = ("path", "image", "image_path", "file_name", "filename")


@dataclass
class ScoreTable:
    """Centred scores per image (rows in file order; columns = the 40 emotion keys)."""

    images: list[str]
    scores: pd.DataFrame
    frame: pd.DataFrame
    """The file as read (for class/label columns)."""
    warnings: list[str] = field(default_factory=list)

    def by_basename(self) -> dict[str, np.ndarray]:
        values = self.scores.to_numpy(dtype=float)
        return {image_id(name) or name: values[row] for row, name in enumerate(self.images)}


def _from_release_results(frame: pd.DataFrame, path: Path) -> ScoreTable:
    image_column = next((c for c in IMAGE_COLUMNS if c in frame.columns), None)
    if image_column is None:
        raise InputError(f"results file {path} lacks an image_path column")
    rows = np.full((len(frame), len(EMOTION_KEYS)), np.nan)
    position = {key: j for j, key in enumerate(EMOTION_KEYS)}
    bad = 0
    for r, results in enumerate(frame["results"].tolist()):
        if not isinstance(results, dict):
            bad += 1
            continue
        for head, entry in results.items():
            try:
                item = resolve_emotion(str(head))
            except KeyError:
                continue
            if isinstance(item, Emotion) and isinstance(entry, dict) and entry.get("mean_subtracted") is not None:
                rows[r, position[item.key]] = float(entry["mean_subtracted"])
    keep = ~np.isnan(rows).all(axis=1)
    warnings = [f"{path}: skipped {int((~keep).sum()) or bad} rows without usable results"] if (~keep).any() else []
    scores = pd.DataFrame(np.nan_to_num(rows[keep], nan=0.0), columns=list(EMOTION_KEYS))
    images = [str(v) for v in frame[image_column][keep].tolist()]
    return ScoreTable(images, scores, frame[keep].reset_index(drop=True), warnings)


def load_score_table(path: str | Path) -> ScoreTable:
    """Read a score table (CSV/Parquet/JSONL) or the release's results JSONL."""
    path = Path(path)
    frame = read_input_table(path, what="score table")
    if "results" in frame.columns:
        return _from_release_results(frame, path)
    image_column = next((c for c in IMAGE_COLUMNS if c in frame.columns), None)
    if image_column is None:
        raise InputError(f"score table {path} needs a 'path' or 'image' column naming each image")
    columns: dict[str, str] = {}
    for column in frame.columns:
        name = str(column)
        if "." in name or name in IMAGE_COLUMNS:
            continue  # raw.<key>, prob.<key>
        try:
            item = resolve_emotion(name)
        except KeyError:
            continue
        if isinstance(item, Emotion):
            columns.setdefault(item.key, name)
    if not columns:
        raise InputError(
            f"score table {path} has no emotion score columns (expected head keys such as 'elation', "
            "'jealousy_&_envy'; this is what `emonet-face predict` writes)"
        )
    warnings = []
    missing = [k for k in EMOTION_KEYS if k not in columns]
    if missing:
        warnings.append(f"{path}: no column for {len(missing)} emotions ({', '.join(missing[:4])}...); counted as 0")
    scores = pd.DataFrame(
        {k: pd.to_numeric(frame[columns[k]], errors="coerce") if k in columns else 0.0 for k in EMOTION_KEYS}
    )
    bad_rows = scores.isna().any(axis=1) | frame[image_column].isna()
    if bad_rows.any():
        warnings.append(f"{path}: skipped {int(bad_rows.sum())} rows with a missing image name or non-numeric score")
    keep = ~bad_rows.to_numpy()
    names = frame[image_column].reset_index(drop=True)
    if {"box_w", "box_h"} <= set(frame.columns) and names[keep].duplicated().any():
        # `predict --faces` tables: one row per face; judge each image by its largest face.
        area = pd.to_numeric(frame["box_w"], errors="coerce") * pd.to_numeric(frame["box_h"], errors="coerce")
        area = area.reset_index(drop=True).fillna(0.0)[keep]
        largest = area.groupby(names[keep]).idxmax().to_numpy()
        warnings.append(
            f"{path}: {int(keep.sum()) - len(largest)} extra face rows dropped; each image is judged by its largest face"
        )
        keep = np.zeros(len(frame), dtype=bool)
        keep[largest] = True
    images = [str(v) for v in frame[image_column][keep].tolist()]
    return ScoreTable(images, scores[keep].reset_index(drop=True), frame[keep].reset_index(drop=True), warnings)
