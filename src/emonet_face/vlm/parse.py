"""Turn a VLM's free-text answer into validated ratings.

Models wrap JSON in code fences, add a sentence after it, or answer with a Python-style dict in
single quotes; :func:`extract_json` accepts all of these. :func:`validate` then checks exactly what
the prompt asked for (all 40 emotions and 4 extra dimensions, integers on their scales, and the
top-5 rule only when the prompt states it) and nothing more: the release's retry loop demanded
"exactly 25" non-zero emotions from every zero-shot answer, a count no prompt asked for, which
left every zero-shot VLM with exactly 25 non-zero emotions.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

from emonet_face.taxonomy import EMOTIONS, EXTRA_DIMENSIONS, Emotion, ExtraDimension, resolve_emotion
from emonet_face.vlm.prompts import RATING_MAX, RATING_MIN

__all__ = ["Annotation", "ParseError", "extract_json", "parse_answer", "validate"]

_FENCE_RE = re.compile(r"```(?:[A-Za-z0-9_-]+)?\s*\n?(.*?)```", re.DOTALL)
_MAX_PROBLEMS_SHOWN = 12


class ParseError(ValueError):
    """The answer is unusable; ``problems`` lists why, in words the model can act on."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:_MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        super().__init__("; ".join(shown) + (f"; and {more} more problems" if more > 0 else ""))


@dataclass
class Annotation:
    """Validated ratings of one image."""

    emotions: dict[str, int]
    """Head key → rating 0..7, all 40 emotions."""
    extra_dimensions: dict[str, int]
    """Extra-dimension key → rating on its own scale, all 4."""
    reasons: dict[str, str] = field(default_factory=dict)
    """Display name → the model's reason (missing reasons are empty strings)."""

    @property
    def n_nonzero(self) -> int:
        return sum(1 for value in self.emotions.values() if value != 0)

    def hq_annotations(self) -> dict[str, int]:
        """The HQ-table dict: ``"<Family>|<Emotion>"`` and ``"Extra Dimensions|<Dimension>"`` keys."""
        out = {e.annotation_key: self.emotions[e.key] for e in EMOTIONS}
        out.update({d.annotation_key: self.extra_dimensions[d.key] for d in EXTRA_DIMENSIONS})
        return out

    def named_ratings(self) -> tuple[dict[str, int], dict[str, int]]:
        """Ratings keyed by display name (as the prompt spells them), for the log."""
        return (
            {e.name: self.emotions[e.key] for e in EMOTIONS},
            {d.name: self.extra_dimensions[d.key] for d in EXTRA_DIMENSIONS},
        )


def _balanced_object(text: str, start: int) -> str | None:
    """The ``{...}`` starting at ``text[start]``, respecting quoted strings of either kind."""
    depth, quote, escaped = 0, "", False
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start : index + 1]
    return None


def _load_object(candidate: str) -> dict | None:
    decoder = json.JSONDecoder()
    try:
        value, _ = decoder.raw_decode(candidate)
        return value if isinstance(value, dict) else None
    except json.JSONDecodeError:
        pass
    block = _balanced_object(candidate, 0) if candidate.startswith("{") else None
    if block is None:
        return None
    try:  # single quotes, True/False/None: a Python literal
        value = ast.literal_eval(block)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def extract_json(text: str) -> dict:
    """The first JSON object in ``text``: bare, in a code fence, followed by prose, or single-quoted."""
    if not isinstance(text, str) or not text.strip():
        raise ParseError(["the answer is empty; reply with the JSON object"])
    candidates = [match.group(1).strip() for match in _FENCE_RE.finditer(text)]
    candidates.append(text.strip())
    for candidate in candidates:
        for start in (m.start() for m in re.finditer(r"\{", candidate)):
            value = _load_object(candidate[start:])
            if value is not None:
                return value
    raise ParseError(["the answer contains no parsable JSON object; reply with one JSON object only"])


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", str(text).lower())


def _as_int(value: Any) -> int | None:
    """Integers, integral floats and digit strings; anything else (bools, 3.5, "high") is not a rating."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def _rating_and_reason(value: Any) -> tuple[Any, str]:
    if isinstance(value, dict):
        lowered = {_norm(k): v for k, v in value.items()}
        rating = lowered.get("rating", lowered.get("value", lowered.get("score")))
        reason = lowered.get("reason", lowered.get("reasoning", ""))
        return rating, "" if reason is None else str(reason)
    return value, ""


def _section(obj: dict, *names: str) -> Any:
    wanted = {_norm(n) for n in names}
    for key, value in obj.items():
        if _norm(key) in wanted:
            return value
    return None


def _check_items(
    section: Any,
    expected: tuple[Emotion, ...] | tuple[ExtraDimension, ...],
    kind: str,
    problems: list[str],
    reasons: dict[str, str],
) -> dict[str, int]:
    ratings: dict[str, int] = {}
    if not isinstance(section, dict):
        problems.append(f'"{kind}" must be an object keyed by name')
        return ratings
    wanted = {item.key for item in expected}
    for name, value in section.items():
        try:
            item = resolve_emotion(str(name))
        except KeyError:
            item = None
        if item is None or item.key not in wanted:
            problems.append(f'unknown {kind} key "{name}" (use the exact names from the list)')
            continue
        if item.key in ratings:
            problems.append(f'"{item.name}" is given twice')
            continue
        raw, reason = _rating_and_reason(value)
        rating = _as_int(raw)
        low, high = (item.low, item.high) if isinstance(item, ExtraDimension) else (RATING_MIN, RATING_MAX)
        if rating is None:
            problems.append(f'"{item.name}": rating {raw!r} is not an integer')
        elif not low <= rating <= high:
            problems.append(f'"{item.name}": rating {rating} is outside {low}..{high}')
        else:
            ratings[item.key] = rating
            reasons[item.name] = reason
    missing = [item.name for item in expected if item.key not in ratings and not _mentioned(section, item)]
    if missing:
        problems.append(f"missing {kind} ({len(missing)}): " + ", ".join(f'"{m}"' for m in missing))
    return ratings


def _mentioned(section: dict, item: Emotion | ExtraDimension) -> bool:
    """Present but invalid (already reported), as opposed to missing."""
    for name in section:
        try:
            if resolve_emotion(str(name)).key == item.key:
                return True
        except KeyError:
            continue
    return False


def validate(obj: dict, *, max_nonzero: int | None = None) -> Annotation:
    """Check an answer object; raise :class:`ParseError` listing every problem found.

    ``max_nonzero`` is the multi-shot top-5 rule; leave it ``None`` for zero-shot so that no count
    is imposed that the prompt did not ask for.
    """
    problems: list[str] = []
    reasons: dict[str, str] = {}
    emotions_section = _section(obj, "emotions")
    if emotions_section is None:
        problems.append('the object has no "emotions" key')
        emotions: dict[str, int] = {}
    else:
        emotions = _check_items(emotions_section, EMOTIONS, "emotions", problems, reasons)
    extra_section = _section(obj, "extra_dimensions", "extra dimensions", "extraDimensions", "dimensions")
    if extra_section is None:
        problems.append('the object has no "extra_dimensions" key')
        extras: dict[str, int] = {}
    else:
        extras = _check_items(extra_section, EXTRA_DIMENSIONS, "extra_dimensions", problems, reasons)
    if max_nonzero is not None:
        nonzero = [e.name for e in EMOTIONS if emotions.get(e.key, 0) != 0]
        if len(nonzero) > max_nonzero:
            problems.append(
                f"{len(nonzero)} emotions are non-zero but at most {max_nonzero} may be; keep the {max_nonzero} "
                "strongest and set all others to 0"
            )
    if problems:
        raise ParseError(problems)
    return Annotation(emotions=emotions, extra_dimensions=extras, reasons=reasons)


def parse_answer(text: str, *, max_nonzero: int | None = None) -> Annotation:
    """:func:`extract_json` then :func:`validate`."""
    return validate(extract_json(text), max_nonzero=max_nonzero)
