"""One dataset row (:class:`Sample`) and the tolerant label parser shared by every reader.

The three EmoNet-Face datasets store their labels differently (BINARY: ``{rater: {emotion: bool}}``,
HQ: ``{rater: {"Family|Emotion": 0..7}}``, BIG: generated ratings whose exact nesting varies), so
the parser walks any nesting of dicts, lists, Arrow maps and JSON strings and keeps every leaf whose
key names an emotion or extra dimension: booleans become votes, numbers become ratings.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from emonet_face.errors import InputError
from emonet_face.inputs import load_image
from emonet_face.taxonomy import resolve_emotion

__all__ = ["Dataset", "LabelParse", "Sample", "label_raters", "parse_label", "resolve_head_key"]

_RECORD_VALUE_FIELDS = ("value", "rating", "score", "intensity", "label")
_RECORD_NAME_FIELDS = ("emotion", "name", "key", "dimension")


@dataclass
class Sample:
    """One image with its targets. ``image`` is encoded bytes or a file path: decoding is deferred so
    readers stay cheap and decoding can run in worker threads."""

    id: str
    image: bytes | Path | None
    ratings: dict[str, float] = field(default_factory=dict)
    """Head key → mean rating over raters (0–7 for emotions, the dimension's own scale otherwise)."""
    votes: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Head key → (yes votes, no votes)."""
    metadata: dict[str, str | None] = field(default_factory=dict)

    def load_image(self) -> Image.Image:

        if self.image is None:
            raise InputError(f"{self.id}: no image data (missing file or empty image bytes)")
        if isinstance(self.image, Path):
            return load_image(self.image)
        try:
            with Image.open(io.BytesIO(self.image)) as img:
                img.load()
                return img.convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{self.id}: image bytes are not a readable image ({exc})") from None


class Dataset(Protocol):
    """What :mod:`emonet_face.data.store` needs from a reader."""

    name: str
    kind: str
    metadata_fields: tuple[str, ...]

    def __iter__(self) -> Iterator[Sample]: ...

    def __len__(self) -> int: ...

    def coverage_report(self) -> str:
        """One or more lines on what the labels lacked (heads never seen, unknown keys)."""
        ...


@dataclass
class LabelParse:
    ratings: dict[str, list[float]] = field(default_factory=dict)
    votes: dict[str, list[int]] = field(default_factory=dict)
    unknown_keys: set[str] = field(default_factory=set)

    def mean_ratings(self) -> dict[str, float]:
        return {k: sum(v) / len(v) for k, v in self.ratings.items() if v}

    def vote_counts(self) -> dict[str, tuple[int, int]]:
        return {k: (v[0], v[1]) for k, v in self.votes.items()}


def resolve_head_key(name: str) -> str | None:
    """Head key for any spelling :func:`resolve_emotion` accepts; ``None`` when none matches."""
    try:
        return resolve_emotion(name).key
    except KeyError:
        return None


def _coerce_leaf(value: Any) -> bool | float | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("true", "yes"):
            return True
        if text.lower() in ("false", "no"):
            return False
        try:
            number = float(text)
        except ValueError:
            return None
        return None if math.isnan(number) else number
    return None


def _as_container(obj: Any) -> Any:
    """JSON strings → objects; Arrow map pylists ``[(k, v), …]`` → dicts."""
    if isinstance(obj, str):
        text = obj.strip()
        if text[:1] in "[{":
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return obj
        return obj
    if isinstance(obj, list) and obj and all(isinstance(x, tuple) and len(x) == 2 for x in obj):
        return dict(obj)
    return obj


def _add_leaf(parse: LabelParse, key: str, value: Any) -> None:
    leaf = _coerce_leaf(value)
    if leaf is None:
        return
    head = resolve_head_key(str(key))
    if head is None:
        parse.unknown_keys.add(str(key))
        return
    if isinstance(leaf, bool):
        counts = parse.votes.setdefault(head, [0, 0])
        counts[0 if leaf else 1] += 1
    else:
        parse.ratings.setdefault(head, []).append(leaf)


def _walk(obj: Any, parse: LabelParse, depth: int = 0) -> None:
    if depth > 8:
        return
    obj = _as_container(obj)
    if isinstance(obj, Mapping):
        names = [f for f in _RECORD_NAME_FIELDS if isinstance(obj.get(f), str)]
        values = [f for f in _RECORD_VALUE_FIELDS if f in obj]
        if names and values:  # a record like {"emotion": "Anger", "rating": 5}
            _add_leaf(parse, obj[names[0]], obj[values[0]])
            return
        for key, value in obj.items():
            value = _as_container(value)
            if isinstance(value, (Mapping, list, tuple)):
                _walk(value, parse, depth + 1)
            else:
                _add_leaf(parse, key, value)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _walk(item, parse, depth + 1)


def parse_label(label: Any, parse: LabelParse | None = None) -> LabelParse:
    """Collect ratings and votes from any nesting of a ``label`` value (see module docstring).

    Rater names (``human-1``) and other keys that are not emotions are skipped; leaf keys that hold a
    value but name no emotion are returned in ``unknown_keys`` so readers can report them.
    """
    parse = parse or LabelParse()
    _walk(label, parse)
    return parse


def label_raters(label: Any) -> list[str]:
    """Names of the raters in a label: keys whose value is itself a mapping of ratings or votes
    (HQ/BINARY's ``[{rater: {emotion: value}}]``; BIG's ``{"generated": {...}}`` is one rater)."""
    raters: list[str] = []

    def walk(obj: Any, depth: int) -> None:
        obj = _as_container(obj)
        if depth > 8:
            return
        if isinstance(obj, Mapping):
            for key, value in obj.items():
                value = _as_container(value)
                if isinstance(value, Mapping) and value and not any(isinstance(_as_container(v), Mapping) for v in value.values()):
                    raters.append(str(key))
                elif isinstance(value, (Mapping, list, tuple)):
                    walk(value, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item, depth + 1)

    walk(label, 0)
    return raters
