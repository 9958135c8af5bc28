"""The release's cross-dataset transfer check (FERD, AffectNet).

Each of the 40 heads maps to a basic class (``transfer_mappings.json``, a copy of the release's
``eval/config.py`` maps). Per image, softmax the mapped heads' centred scores; the image is correct
when any head mapped to its true class has probability above ``1.5 / number of mapped heads``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emonet_face.bench.scores import load_score_table
from emonet_face.errors import InputError
from emonet_face.taxonomy import EMOTION_KEYS, Emotion, resolve_emotion

DATASETS = ("ferd", "affectnet")
THRESHOLD_FACTOR = 1.5
CLASS_COLUMNS = ("class", "true_class", "label", "target", "expression")
# Spellings of basic classes found in file names and label columns.
_CLASS_ALIASES = {
    "surprised": "surprise",
    "happiness": "happy",
    "sadness": "sad",
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "contemptuous": "contempt",
}


def load_mappings(path: str | Path | None = None) -> dict[str, Any]:
    """The release's head → class maps (shipped with the package unless ``path`` is given)."""
    try:
        if path is None:
            text = resources.files("emonet_face.bench").joinpath("transfer_mappings.json").read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        mappings = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read transfer mappings {path or 'package data'}: {exc}") from exc
    if not all(isinstance(mappings.get(d), dict) for d in DATASETS):
        raise InputError(f"transfer mappings {path} must hold 'ferd' and 'affectnet' head → class maps")
    return mappings


def head_class_map(mappings: dict[str, Any], dataset: str) -> dict[str, str]:
    """Emotion key → class, for one dataset."""
    out = {}
    for head, cls in mappings[dataset].items():
        item = resolve_emotion(head)
        if isinstance(item, Emotion):
            out[item.key] = str(cls).lower()
    return out


def normalise_class(value: Any, dataset: str, label_ids: dict[str, str]) -> str | None:
    """A true class from a label (name or AffectNet integer id); ``None`` if absent."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if re.fullmatch(r"-?\d+(\.0+)?", text):
        return label_ids.get(str(int(float(text))))
    text = text.lower()
    return _CLASS_ALIASES.get(text, text)


def ferd_class_from_name(name: str) -> str | None:
    """FERD's true class is the file-name suffix: ``0000_Surprised.jpg`` → ``surprise``."""
    stem = Path(str(name)).stem
    if "_" not in stem:
        return None
    suffix = stem.rsplit("_", 1)[1].lower()
    return _CLASS_ALIASES.get(suffix, suffix)


@dataclass
class TransferResult:
    dataset: str
    per_image: pd.DataFrame
    warnings: list[str]

    def summary(self) -> dict[str, Any]:
        correct = self.per_image["correct"]
        per_class = self.per_image.groupby("true_class")["correct"].agg(["mean", "size"])
        return {
            "dataset": self.dataset,
            "accuracy": float(correct.mean()) if len(correct) else None,
            "n": len(correct),
            "per_class": {str(c): float(r["mean"]) for c, r in per_class.iterrows()},
            "n_per_class": {str(c): int(r["size"]) for c, r in per_class.iterrows()},
            "threshold": f"{THRESHOLD_FACTOR} / number of mapped heads",
            "warnings": list(self.warnings),
        }


def evaluate_transfer(
    path: str | Path, dataset: str, *, class_column: str | None = None, mappings_path: str | Path | None = None
) -> TransferResult:
    """Run the transfer check on a results JSONL or score table."""
    dataset = dataset.lower()
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    mappings = load_mappings(mappings_path)
    head_map = head_class_map(mappings, dataset)
    label_ids = {str(k): str(v).lower() for k, v in mappings.get(f"{dataset}_label_ids", {}).items()}
    if dataset == "affectnet" and not label_ids:
        label_ids = {str(k): str(v).lower() for k, v in mappings.get("affectnet_label_ids", {}).items()}
    table = load_score_table(path)
    warnings = list(table.warnings)

    column = class_column or next((c for c in CLASS_COLUMNS if c in table.frame.columns), None)
    if class_column and class_column not in table.frame.columns:
        raise InputError(
            f"{path} has no class column {class_column!r}; found {', '.join(map(str, table.frame.columns))}"
        )
    if column is not None:
        truth = [normalise_class(v, dataset, label_ids) for v in table.frame[column].tolist()]
    elif dataset == "ferd":
        truth = [ferd_class_from_name(n) for n in table.images]
    else:
        raise InputError(f"{path} has no class column (one of {', '.join(CLASS_COLUMNS)}); AffectNet needs its 'label'")

    keys = [k for k in EMOTION_KEYS if k in head_map]
    classes = np.array([head_map[k] for k in keys])
    scores = table.scores[keys].to_numpy(dtype=float)
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    threshold = THRESHOLD_FACTOR / len(keys)

    known = set(classes)
    rows = []
    skipped = 0
    for r, (image, true_class) in enumerate(zip(table.images, truth)):
        if true_class is None or true_class not in known:
            skipped += 1
            continue
        hits = probs[r][classes == true_class]
        class_mass = {c: float(probs[r][classes == c].sum()) for c in sorted(known)}
        rows.append(
            {
                "image": image,
                "true_class": true_class,
                "correct": bool((hits > threshold).any()),
                "max_true_class_prob": float(hits.max()),
                "top_head": keys[int(np.argmax(probs[r]))],
                "top_class_by_mass": max(class_mass, key=class_mass.__getitem__),
            }
        )
    if skipped:
        warnings.append(f"{path}: skipped {skipped} rows whose true class is missing or not one of {sorted(known)}")
    if not rows:
        raise InputError(f"{path}: no row has a usable true class for {dataset}")
    return TransferResult(dataset, pd.DataFrame(rows), warnings)
