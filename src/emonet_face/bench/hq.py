"""Loading EmoNet-Face HQ annotations into one dense array, applying the published normalisation.

Layouts read:

* the published ``hq.csv`` layout: one row per (image, annotator) with ``image``, ``annotator``,
  ``human`` and ``annotations`` (a Python dict literal or JSON object keyed ``"<Family>|<Emotion>"``);
* the Hugging Face HQ dataset layout: one row per image, a ``label`` column holding a list of
  ``{rater: {"Family|Emotion": rating}}`` (human raters only).

Normalisation (the published protocol): ``Hume Face*`` values × 7, ``Extra Dimensions|`` keys
dropped, a missing emotion key counts 0, duplicate (image, annotator) rows averaged.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emonet_face.bench.scores import load_score_table
from emonet_face.bench.tables import image_id, parse_mapping, read_input_table, require_columns
from emonet_face.errors import InputError
from emonet_face.taxonomy import EMOTIONS, Emotion, resolve_emotion

N_EMOTIONS = len(EMOTIONS)
HUME_PREFIX = "Hume Face"
HUME_SCALE = 7.0
_EXTRA = object()
_UNKNOWN = object()


@dataclass
class HQData:
    """All ratings of all annotators as one array: ``ratings[a, i, e]`` (NaN = image not rated)."""

    annotators: list[str]
    human: np.ndarray
    images: list[str]
    ratings: np.ndarray
    warnings: list[str] = field(default_factory=list)

    def rated(self) -> np.ndarray:
        """(A, I) bool: which annotator rated which image."""
        return ~np.isnan(self.ratings[:, :, 0])

    def add_annotator(self, name: str, values_by_image: dict[str, np.ndarray], *, source: str) -> None:
        """Join one more (model) annotator; images are matched by file name (basename)."""
        if name in self.annotators:
            raise InputError(
                f"annotator name {name!r} from {source} is already in the annotation file; pick another --name"
            )
        row = np.full((len(self.images), N_EMOTIONS), np.nan)
        matched = 0
        # By file name; failing that by stem (predictions made on re-encoded copies, .png vs .jpg).
        for key in (lambda file_name: file_name, lambda file_name: Path(file_name).stem):
            index: dict[str, list[int]] = {}
            for i, image in enumerate(self.images):
                index.setdefault(key(image_id(image) or image), []).append(i)
            for file_name, values in values_by_image.items():
                for i in index.get(key(file_name), ()):
                    row[i] = values
                    matched += 1
            if matched:
                break
        if matched == 0:
            raise InputError(
                f"no image of {source} matches an image of the annotation file by file name; "
                "check that the predictions were made on the HQ images"
            )
        unmatched = len(self.images) - int((~np.isnan(row[:, 0])).sum())
        if unmatched:
            self.warnings.append(
                f"{name!r}: {unmatched} of {len(self.images)} HQ images have no prediction in {source}"
            )
        self.annotators.append(name)
        self.human = np.append(self.human, False)
        self.ratings = np.concatenate([self.ratings, row[None]], axis=0)


def _key_lookup(key: str, cache: dict[str, Any]) -> Any:
    found = cache.get(key)
    if found is None:
        try:
            item = resolve_emotion(key)
        except KeyError:
            found = _UNKNOWN
        else:
            found = EMOTIONS.index(item) if isinstance(item, Emotion) else _EXTRA
        cache[key] = found
    return found


def _parse_bool(value: Any) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0", "yes", "t", "y"):
        return True
    if text in ("false", "0", "0.0", "no", "f", "n"):
        return False
    return None


class _RowParser:
    """Turns annotation dicts into 40-vectors and counts what it had to fix, for one warning each."""

    def __init__(self) -> None:
        self.cache: dict[str, Any] = {}
        self.unknown_keys: Counter[str] = Counter()
        self.bad_values = 0

    def vector(self, mapping: dict) -> np.ndarray:
        out = np.zeros(N_EMOTIONS)
        for key, value in mapping.items():
            index = _key_lookup(str(key), self.cache)
            if index is _EXTRA:
                continue
            if value is None:
                continue  # absent (e.g. a Parquet struct field this rater did not use): counts 0
            if index is _UNKNOWN:
                self.unknown_keys[str(key)] += 1
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not math.isfinite(number):
                self.bad_values += 1
                continue  # counts 0, like a missing key
            out[index] = number
        return out

    def report(self, path: Path, warnings: list[str]) -> None:
        if self.unknown_keys:
            keys = ", ".join(f"{k!r}" for k, _ in self.unknown_keys.most_common(5))
            warnings.append(f"{path}: ignored {sum(self.unknown_keys.values())} ratings with unknown keys ({keys})")
        if self.bad_values:
            warnings.append(f"{path}: {self.bad_values} non-numeric or non-finite ratings counted as 0")


def _aggregate(
    annotators: list[str], images: list[str], humans: list[bool], vectors: list[np.ndarray], path: Path
) -> HQData:
    """Average duplicate (image, annotator) rows into the dense (A, I, E) array."""
    warnings: list[str] = []
    a_codes, a_names = pd.factorize(pd.Series(annotators, dtype=object))
    i_codes, i_names = pd.factorize(pd.Series(images, dtype=object))
    n_a, n_i = len(a_names), len(i_names)
    flat = a_codes.astype(np.int64) * n_i + i_codes
    counts = np.bincount(flat, minlength=n_a * n_i)
    sums = np.zeros((n_a * n_i, N_EMOTIONS))
    np.add.at(sums, flat, np.asarray(vectors))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratings = (sums / counts[:, None]).reshape(n_a, n_i, N_EMOTIONS)
    ratings[counts.reshape(n_a, n_i) == 0] = np.nan
    duplicates = int((counts > 1).sum())
    if duplicates:
        warnings.append(f"{path}: averaged duplicate rows for {duplicates} (image, annotator) pairs")

    human = np.zeros(n_a, dtype=bool)
    flags = pd.DataFrame({"a": a_codes, "h": humans}).groupby("a")["h"]
    for code, share in flags.mean().items():
        human[code] = share >= 0.5
        if 0 < share < 1:
            warnings.append(
                f"{path}: annotator {a_names[code]!r} is marked human on some rows only; using the majority"
            )
    names = [str(n) for n in a_names]
    for a, name in enumerate(names):
        if not human[a] and name.startswith(HUME_PREFIX):
            ratings[a] *= HUME_SCALE
    data = HQData(names, human, [str(i) for i in i_names], ratings, warnings)
    _check_human_range(data, path)
    return data


def _check_human_range(data: HQData, path: Path) -> None:
    values = data.ratings[data.human]
    values = values[~np.isnan(values)]
    bad = int(((values < 0) | (values >= 8) | (values != np.trunc(values))).sum())
    if bad:
        data.warnings.append(
            f"{path}: {bad} human ratings are not integers in 0..7; they are truncated toward zero and any "
            "outside 0..7 drop out of kappa"
        )


def _load_hq_layout(frame: pd.DataFrame, path: Path, default_human: bool | None) -> HQData:
    columns = ["image", "annotator", "annotations"] + ([] if default_human is not None else ["human"])
    require_columns(frame, columns, path=path, what="annotation file")
    parser = _RowParser()
    annotators: list[str] = []
    images: list[str] = []
    humans: list[bool] = []
    vectors: list[np.ndarray] = []
    bad_rows: list[int] = []
    has_human = "human" in frame.columns
    human_values = frame["human"].tolist() if has_human else [default_human] * len(frame)
    for row, (image, annotator, raw, human_raw) in enumerate(
        zip(frame["image"].tolist(), frame["annotator"].tolist(), frame["annotations"].tolist(), human_values)
    ):
        mapping = parse_mapping(raw)
        human = _parse_bool(human_raw) if has_human else default_human
        name = image_id(image) if isinstance(image, dict) else (None if pd.isna(image) else str(image))
        if not isinstance(mapping, dict) or human is None or name is None or pd.isna(annotator):
            bad_rows.append(row)
            continue
        annotators.append(str(annotator))
        images.append(name)
        humans.append(human)
        vectors.append(parser.vector(mapping))
    if not vectors:
        raise InputError(
            f"annotation file {path}: no row could be parsed (the 'annotations' column must hold a dict literal or "
            "JSON object keyed 'Family|Emotion', 'human' must be true/false)"
        )
    data = _aggregate(annotators, images, humans, vectors, path)
    if bad_rows:
        shown = ", ".join(str(r + 2) for r in bad_rows[:5])  # +2: header line and 1-based numbering
        data.warnings.insert(
            0,
            f"{path}: skipped {len(bad_rows)} rows with an unparsable annotations dict, human flag, image or "
            f"annotator (file lines {shown}{', ...' if len(bad_rows) > 5 else ''})",
        )
    parser.report(path, data.warnings)
    return data


def _load_hf_layout(frame: pd.DataFrame, path: Path) -> HQData:
    """HF dataset rows: one image each, ``label`` = list of ``{rater: {"Family|Emotion": rating}}``."""
    image_column = next((c for c in ("image", "file_name", "path", "image_path") if c in frame.columns), None)
    parser = _RowParser()
    annotators: list[str] = []
    images: list[str] = []
    vectors: list[np.ndarray] = []
    bad_rows = 0
    for row, raw in enumerate(frame["label"].tolist()):
        labels = parse_mapping(raw)
        if isinstance(labels, dict):
            labels = [labels]
        image = image_id(frame[image_column].iloc[row]) if image_column else None
        if not isinstance(labels, list) or not labels:
            bad_rows += 1
            continue
        image = image or f"row-{row}"
        for entry in labels:
            if not isinstance(entry, dict):
                bad_rows += 1
                continue
            for rater, ratings in entry.items():
                if ratings is None:
                    continue  # Parquet structs list every rater; None = this rater did not rate the image
                if not isinstance(ratings, dict):
                    bad_rows += 1
                    continue
                annotators.append(str(rater))
                images.append(image)
                vectors.append(parser.vector(ratings))
    if not vectors:
        raise InputError(
            f"annotation file {path}: the 'label' column holds no {{rater: {{'Family|Emotion': rating}}}} lists"
        )
    data = _aggregate(annotators, images, [True] * len(vectors), vectors, path)
    if bad_rows:
        data.warnings.insert(0, f"{path}: skipped {bad_rows} unparsable label entries")
    parser.report(path, data.warnings)
    return data


def load_hq(path: str | Path, *, default_human: bool | None = None) -> HQData:
    """Load an HQ annotation file (published or Hugging Face layout) into :class:`HQData`.

    ``default_human`` is used when the file has no ``human`` column (e.g. model-only files).
    """
    path = Path(path)
    return _load_frame(
        read_input_table(path, what="annotation file", text_columns=("image", "annotator")), path, default_human
    )


def _load_frame(frame: pd.DataFrame, path: Path, default_human: bool | None) -> HQData:
    if "annotations" not in frame.columns and "label" in frame.columns:
        return _load_hf_layout(frame, path)
    return _load_hq_layout(frame, path, default_human)


def add_predictions(data: HQData, path: str | Path, name: str | None) -> list[str]:
    """Join a model's predictions as annotator(s); returns the names added.

    ``path`` is a score table (``predict``/``score`` output, centred ``<key>`` columns, images matched
    by file name) or a file in the HQ layout (e.g. VLM ratings); its human rows, if any, are ignored.
    """

    path = Path(path)
    frame = read_input_table(path, what="predictions file")
    if "annotations" in frame.columns or "label" in frame.columns:
        pred = _load_frame(frame, path, default_human=False)
        data.warnings.extend(pred.warnings)
        models = [a for a in range(len(pred.annotators)) if not pred.human[a]]
        if len(models) < len(pred.annotators):
            data.warnings.append(
                f"{path}: ignored {len(pred.annotators) - len(models)} human annotators in the predictions file"
            )
        if not models:
            raise InputError(f"predictions file {path} holds only human annotators; mark model rows human=false")
        if name and len(models) > 1:
            data.warnings.append(f"{path}: holds {len(models)} model annotators; --name ignored, kept their own names")
        added = []
        for a in models:
            label = name if name and len(models) == 1 else pred.annotators[a]
            rated = ~np.isnan(pred.ratings[a, :, 0])
            values = {image_id(pred.images[i]) or pred.images[i]: pred.ratings[a, i] for i in np.flatnonzero(rated)}
            data.add_annotator(label, values, source=str(path))
            added.append(label)
        return added
    table = load_score_table(path)
    data.warnings.extend(table.warnings)
    label = name or path.stem
    data.add_annotator(label, table.by_basename(), source=str(path))
    return [label]
