"""Demographic vocabularies: gender, FairFace age bins, ethnicity → FairFace group.

Everything comes from one data table, ``demographics.json`` beside this module (or a copy passed as
``table=``): extending the mapping means adding a line there, not code. Raw strings are matched
case-insensitively after collapsing whitespace and turning ``_``/``-`` into spaces, so
``'Black or African American'``, ``'black_or_african_american'`` and ``' BLACK or african american '``
are one key.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from emonet_face.errors import InputError

__all__ = [
    "FACTORS",
    "UNKNOWN",
    "DemographicTable",
    "demographic_columns",
    "load_demographic_table",
]

UNKNOWN = "unknown"
FACTORS = ("gender", "age_group", "ethnicity", "fairface")
"""Factors every report knows: ``ethnicity`` is the raw string, ``fairface`` its FairFace group."""
_FIRST_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _norm(text: Any) -> str | None:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    out = " ".join(re.sub(r"[_\-]+", " ", str(text)).lower().split())
    return out or None


def _table_key(text: Any) -> str:
    """A key of one of the table's mappings, normalised as :func:`_norm` does: lookups come from
    :func:`_norm` too. ``""`` where ``_norm`` gives ``None`` (a key no lookup can reach)."""
    return _norm(text) or ""


@dataclass(frozen=True)
class DemographicTable:
    fairface_groups: tuple[str, ...]
    age_bins: tuple[tuple[int, int | None, str], ...]
    ethnicity: dict[str, str]
    gender: dict[str, str]
    regions: dict[str, tuple[str, ...]]
    source: str = "demographics.json"
    unknown_reasons: dict[str, str] = field(default_factory=dict)

    @property
    def age_labels(self) -> list[str]:
        return [label for _, _, label in self.age_bins]

    @property
    def fairface_labels(self) -> list[str]:
        return [*self.fairface_groups, UNKNOWN]

    def fairface(self, ethnicity: Any) -> tuple[str, bool]:
        """(FairFace group or ``unknown``, whether the string was in the table). Missing values are
        ``unknown`` and count as mapped (nothing to map)."""
        key = _norm(ethnicity)
        if key is None:
            return UNKNOWN, True
        if key in self.ethnicity:
            return self.ethnicity[key], True
        if key in self._fairface_lower:
            return self._fairface_lower[key], True
        return UNKNOWN, False

    @property
    def _fairface_lower(self) -> dict[str, str]:
        return {_table_key(g): g for g in self.fairface_groups}

    def gender_label(self, gender: Any) -> str:
        key = _norm(gender)
        if key is None:
            return UNKNOWN
        return self.gender.get(key, key)

    def age_group(self, age: Any) -> str:
        """FairFace age bin of an age given as a number or text (``'35'``, ``'of 30 years'``,
        ``'20-29'``, ``'70+'``); ``unknown`` when no number is found."""
        text = _norm(age)
        if text is None:
            return UNKNOWN
        for _, _, label in self.age_bins:
            if text == _norm(label) or text.replace(" ", "") == label:
                return label
        match = _FIRST_NUMBER.search(text)
        if match is None:
            return UNKNOWN
        value = float(match.group())
        for low, high, label in self.age_bins:
            if value >= low and (high is None or value < high + 1):
                return label
        return UNKNOWN


def _from_json(payload: dict[str, Any], source: str) -> DemographicTable:
    try:
        groups = tuple(payload["fairface_groups"])
        ethnicity = {_table_key(k): str(v) for k, v in payload["ethnicity"].items() if not k.startswith("_")}
        bad = sorted({v for v in ethnicity.values() if v not in groups and v != UNKNOWN})
        if bad:
            raise InputError(f"{source}: ethnicity maps to {bad}, which are not FairFace groups {list(groups)}")
        return DemographicTable(
            fairface_groups=groups,
            age_bins=tuple((int(lo), None if hi is None else int(hi), str(label)) for lo, hi, label in payload["age_bins"]),
            ethnicity=ethnicity,
            gender={_table_key(k): str(v) for k, v in payload.get("gender", {}).items()},
            regions={g: tuple(c.lower() for c in codes) for g, codes in payload.get("regions", {}).items()},
            source=source,
            unknown_reasons={_table_key(k): v for k, v in payload.get("_ethnicity_unknown_reasons", {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{source}: not a demographic table ({type(exc).__name__}: {exc}); see the shipped demographics.json") from None


@lru_cache(maxsize=1)
def _shipped() -> DemographicTable:
    text = resources.files("emonet_face.stats").joinpath("demographics.json").read_text(encoding="utf-8")
    return _from_json(json.loads(text), "emonet_face/stats/demographics.json")


def load_demographic_table(path: str | Path | None = None) -> DemographicTable:
    """The shipped table, or a copy at ``path`` (e.g. extended with your own dataset's strings)."""
    if path is None:
        return _shipped()
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: demographic table not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON demographic table ({exc})") from None
    if not isinstance(payload, dict):
        raise InputError(f"{path}: not a JSON demographic table (expected an object)")
    return _from_json(payload, str(path))


def demographic_columns(
    frame: pd.DataFrame, table: DemographicTable | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The 4 factors for rows holding raw ``gender``/``age``/``ethnicity`` columns (any may be absent).

    Returns the factor frame (same index) and the unmapped ethnicity strings with their counts.
    Mapping works on the distinct raw values, so millions of rows cost as much as their vocabulary.
    """
    table = table or load_demographic_table()
    out = pd.DataFrame(index=frame.index)

    def mapped(column: str, fn) -> pd.Series:
        if column not in frame.columns:
            return pd.Series(UNKNOWN, index=frame.index, dtype=object)
        raw = frame[column].astype(object)
        lookup = {v: fn(v) for v in pd.unique(raw.dropna())}
        return raw.map(lookup).fillna(UNKNOWN).astype(object)

    out["gender"] = mapped("gender", table.gender_label)
    out["age_group"] = mapped("age", table.age_group)
    if "ethnicity" in frame.columns:
        raw = frame["ethnicity"].astype(object)
        out["ethnicity"] = raw.where(raw.notna() & (raw.astype(str).str.strip() != ""), UNKNOWN).astype(str)
    else:
        out["ethnicity"] = UNKNOWN
    unmapped: dict[str, int] = {}
    groups: dict[str, str] = {}
    for value, count in out["ethnicity"].value_counts().items():
        group, known = table.fairface(None if value == UNKNOWN else value)
        groups[value] = group
        if not known:
            unmapped[str(value)] = int(count)
    out["fairface"] = out["ethnicity"].map(groups).astype(object)
    return out, unmapped
