"""EmoNet-Face BINARY vote analysis: how often experts agree that an emotion is present.

Input rows ``path, annotator, value, emotion``. Per (image, emotion) group with at least two votes:
unanimous → ``agreement``; a split with a majority (2:1) → ``partial``; an even split (1:1) →
``disagreement``. Annotator-level statistics: votes per annotator, pairwise raw agreement and
Cohen's kappa on shared items.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emonet_face.bench.tables import read_input_table, require_columns
from emonet_face.errors import InputError, require_extra
from emonet_face.taxonomy import resolve_emotion

_TRUE = {"true", "1", "1.0", "yes", "t", "y"}
_FALSE = {"false", "0", "0.0", "no", "f", "n"}


@dataclass
class BinaryResult:
    per_emotion: pd.DataFrame
    overall: dict[str, float]
    annotators: pd.DataFrame
    pairs: pd.DataFrame
    warnings: list[str]

    def summary(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, (float, np.floating)):
                return None if not np.isfinite(v) else float(v)
            return int(v) if isinstance(v, np.integer) else v

        return {
            "per_emotion": {
                str(e): {
                    "n": int(r["n"]),
                    "agreement": float(r["agreement"]),
                    "partial": float(r["partial"]),
                    "disagreement": float(r["disagreement"]),
                }
                for e, r in self.per_emotion.iterrows()
            },
            "overall": self.overall,
            "annotators": {str(a): {k: clean(v) for k, v in r.items()} for a, r in self.annotators.iterrows()},
            "pairs": [{k: clean(v) for k, v in r.items()} for r in self.pairs.to_dict("records")],
            "warnings": list(self.warnings),
        }


def _vote(value: Any) -> float:
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    return np.nan


def _emotion_name(text: str, unknown: set[str]) -> str:
    try:
        item = resolve_emotion(text)
    except KeyError:
        unknown.add(text)
        return text
    return item.name


def load_votes(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Votes as ``path, annotator, emotion, vote`` (vote 0/1) with normalised emotion names."""
    frame = read_input_table(path, what="vote file", text_columns=("path", "annotator", "emotion"))
    require_columns(frame, ["path", "annotator", "value", "emotion"], path=path, what="vote file")
    warn: list[str] = []
    votes = pd.DataFrame(
        {
            "path": frame["path"].astype(str),
            "annotator": frame["annotator"].astype(str),
            "emotion": frame["emotion"].astype(str),
            "vote": [_vote(v) for v in frame["value"].tolist()],
        }
    )
    bad = votes["vote"].isna() | frame["path"].isna().to_numpy() | frame["emotion"].isna().to_numpy()
    if bad.any():
        warn.append(f"{path}: skipped {int(bad.sum())} rows whose value is not True/False or lacks path/emotion")
        votes = votes[~bad]
    if votes.empty:
        raise InputError(f"vote file {path} has no usable True/False votes")
    unknown: set[str] = set()
    names = {e: _emotion_name(e, unknown) for e in votes["emotion"].unique()}
    votes["emotion"] = votes["emotion"].map(names)
    if unknown:
        warn.append(
            f"{path}: {len(unknown)} emotion names are not in the taxonomy, kept as written: {sorted(unknown)[:5]}"
        )
    duplicated = votes.duplicated(["path", "emotion", "annotator"], keep="last")
    if duplicated.any():
        warn.append(f"{path}: {int(duplicated.sum())} repeated votes by the same annotator on an item; kept the last")
        votes = votes[~duplicated]
    return votes.reset_index(drop=True), warn


def _vote_shares(groups: pd.DataFrame) -> dict[str, float]:
    n = len(groups)
    return {
        "n": n,
        "agreement": float(groups["outcome"].eq("agreement").mean()) if n else float("nan"),
        "partial": float(groups["outcome"].eq("partial").mean()) if n else float("nan"),
        "disagreement": float(groups["outcome"].eq("disagreement").mean()) if n else float("nan"),
    }


def analyse_binary(path: str | Path) -> BinaryResult:
    metrics = require_extra("sklearn.metrics", feature="emonet-face bench binary", extra="bench", package="scikit-learn")
    votes, warn = load_votes(path)
    items = votes.groupby(["path", "emotion"], sort=False)["vote"].agg(["size", "sum"]).reset_index()
    items = items[items["size"] >= 2].copy()
    yes = items["sum"]
    unanimous = (yes == 0) | (yes == items["size"])
    tie = yes * 2 == items["size"]
    items["outcome"] = np.where(unanimous, "agreement", np.where(tie, "disagreement", "partial"))
    per_emotion = pd.DataFrame({e: _vote_shares(g) for e, g in items.groupby("emotion", sort=True)}).T[
        ["n", "agreement", "partial", "disagreement"]
    ]
    per_emotion["n"] = per_emotion["n"].astype(int)
    per_emotion.index.name = "emotion"
    if per_emotion.empty:
        warn.append(f"{path}: no (image, emotion) item has two or more votes; shares are undefined")

    annotators = votes.groupby("annotator").agg(
        votes=("vote", "size"), share_true=("vote", "mean"), images=("path", "nunique")
    )
    wide = votes.pivot_table(index=["path", "emotion"], columns="annotator", values="vote", aggfunc="last")
    pair_rows = []
    for a, b in itertools.combinations(wide.columns, 2):
        both = wide[[a, b]].dropna()
        if both.empty:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kappa = metrics.cohen_kappa_score(both[a], both[b])
        pair_rows.append(
            {
                "annotator_a": a,
                "annotator_b": b,
                "shared_items": len(both),
                "agreement": float((both[a] == both[b]).mean()),
                "cohen_kappa": float(kappa),
            }
        )
    return BinaryResult(per_emotion, _vote_shares(items), annotators, pd.DataFrame(pair_rows), warn)
