"""Prompts that ask a VLM to rate every EmoNet-Face emotion, generated from the taxonomy.

Templates use ``string.Template`` placeholders (``$emotion_list``, ``$rating_scale``,
``$extra_dimensions``, ``$answer_format``, ``$examples``, ``$nonzero_rule``) so that JSON braces in a
researcher's own template (``--prompt-file``) need no escaping. The emotion names, descriptors and
dimension scales come from :mod:`emonet_face.taxonomy` only; the rendered text and its SHA-256 are
recorded with every run so a result can always be traced to the exact prompt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from string import Template

from emonet_face.errors import InputError
from emonet_face.taxonomy import EMOTIONS, EXTRA_DIMENSIONS, FAMILIES, emotion

__all__ = [
    "MULTI_SHOT_MAX_NONZERO",
    "PROMPT_KINDS",
    "RATING_MAX",
    "RATING_MIN",
    "Prompt",
    "build_prompt",
]

RATING_MIN, RATING_MAX = 0, 7
MULTI_SHOT_MAX_NONZERO = 5
PROMPT_KINDS = {"zero-shot": "ZS", "multi-shot": "MS"}
"""Prompt kind → the suffix the HQ table uses for that kind of VLM annotator."""

RATING_LEVELS = (
    "0 = not present at all",
    "1 = barely perceptible, a faint trace",
    "2 = weak",
    "3 = mild but clearly there",
    "4 = moderate",
    "5 = strong",
    "6 = very strong",
    "7 = extreme, the dominant feeling of the face",
)

_INTRO = (
    "You are an expert annotator of facial emotions. The image shows a person's face (the faces in this "
    "benchmark are AI-generated and resemble no real person). Judge how strongly the person appears to feel "
    "each of the emotions below, from the face alone, following your honest first impression."
)

ZERO_SHOT_TEMPLATE = f"""{_INTRO}

Rate EVERY one of the following 40 emotions (grouped by family; the words after each name describe it):
$emotion_list

Rating scale for each emotion (integers only):
$rating_scale
Rate each emotion independently; use 0 for every emotion you do not see. There is no required number of
non-zero ratings.

Also rate these 4 extra dimensions, each on its own integer scale:
$extra_dimensions

Give a short reason (one sentence at most) for every rating.

$answer_format
"""

MULTI_SHOT_TEMPLATE = f"""{_INTRO}

Rate EVERY one of the following 40 emotions (grouped by family; the words after each name describe it):
$emotion_list

Rating scale for each emotion (integers only):
$rating_scale
$nonzero_rule

Also rate these 4 extra dimensions, each on its own integer scale:
$extra_dimensions

Give a short reason (one sentence at most) for every rating.

$examples

$answer_format
"""


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt plus what validation needs to know about it."""

    kind: str
    """``"zero-shot"`` or ``"multi-shot"``."""
    text: str
    source: str
    """``"built-in"`` or the path of the researcher's template file."""
    max_nonzero: int | None
    """At most this many emotions may be non-zero (multi-shot's top-5 rule); ``None`` = no limit."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def suffix(self) -> str:
        """``"ZS"`` or ``"MS"``: the annotator-name suffix used in the HQ table."""
        return PROMPT_KINDS[self.kind]


def emotion_list() -> str:
    lines = []
    for family in FAMILIES:
        lines.append(f"{family}:")
        lines.extend(f"- {e.name}: {', '.join(dict.fromkeys(e.descriptors))}" for e in EMOTIONS if e.family == family)
    return "\n".join(lines)


def rating_scale() -> str:
    return "\n".join(f"- {level}" for level in RATING_LEVELS)


def extra_dimensions() -> str:
    return "\n".join(f"- {d.name} ({d.low} to {d.high}): {d.description}" for d in EXTRA_DIMENSIONS)


def nonzero_rule(max_nonzero: int = MULTI_SHOT_MAX_NONZERO) -> str:
    return (
        f"Rule: at most {max_nonzero} emotions may have a non-zero rating. Pick the (up to) {max_nonzero} emotions "
        "that best describe the face and rate all the others 0. Fewer non-zero ratings are fine."
    )


def answer_format() -> str:
    """The answer skeleton: every display name spelled out, so the model copies exact keys."""
    slot = '{"rating": <integer>, "reason": "<short reason>"}'
    emotion_lines = ",\n".join(f'    "{e.name}": {slot}' for e in _family_ordered())
    extra_lines = ",\n".join(f'    "{d.name}": {slot}' for d in EXTRA_DIMENSIONS)
    return (
        "Answer with ONE JSON object and nothing else (no code fence, no text before or after), with exactly "
        "these keys, all 40 emotions and all 4 extra dimensions:\n"
        f'{{\n  "emotions": {{\n{emotion_lines}\n  }},\n  "extra_dimensions": {{\n{extra_lines}\n  }}\n}}'
    )


def _family_ordered() -> list:
    return [e for family in FAMILIES for e in EMOTIONS if e.family == family]


# Worked examples for multi-shot prompting: a description of a face and the ratings it deserves
# (head keys resolve through the taxonomy; every emotion not listed is rated 0).
_EXAMPLES: tuple[tuple[str, dict[str, tuple[int, str]], dict[str, tuple[int, str]]], ...] = (
    (
        "a face with a broad open-mouthed smile, raised cheeks and crinkled eyes",
        {
            "elation": (6, "broad genuine (Duchenne) smile"),
            "amusement": (5, "laughing expression"),
            "contentment": (3, "relaxed, at ease"),
            "affection": (2, "warm look"),
        },
        {
            "valence": (3, "clearly positive"),
            "arousal": (5, "animated, energetic"),
            "dominance": (1, "confident, at ease"),
            "emotional_vulnerability": (1, "open but not fragile"),
        },
    ),
    (
        "a face with lowered, drawn-together brows, downturned mouth corners and glistening eyes looking down",
        {
            "sadness": (6, "downturned mouth, teary eyes"),
            "distress": (4, "tense, pained brows"),
            "helplessness": (3, "gaze lowered, defeated posture of the face"),
            "disappointment": (2, "letdown look"),
        },
        {
            "valence": (-3, "strongly negative"),
            "arousal": (2, "low energy"),
            "dominance": (-2, "submissive, withdrawn"),
            "emotional_vulnerability": (4, "visibly fragile"),
        },
    ),
)


def examples() -> str:
    blocks = ["Worked examples of the expected output:"]
    for number, (description, emotion_ratings, extra_ratings) in enumerate(_EXAMPLES, start=1):
        rated = {emotion(key).name: value for key, value in emotion_ratings.items()}
        answer = {
            "emotions": {
                e.name: {"rating": rated.get(e.name, (0, ""))[0], "reason": rated.get(e.name, (0, "not visible"))[1]}
                for e in _family_ordered()
            },
            "extra_dimensions": {
                d.name: {"rating": extra_ratings[d.key][0], "reason": extra_ratings[d.key][1]} for d in EXTRA_DIMENSIONS
            },
        }
        blocks.append(f"Example {number}, {description}:\n{json.dumps(answer, ensure_ascii=False)}")
    return "\n\n".join(blocks)


def _sections(max_nonzero: int | None) -> dict[str, str]:
    return {
        "emotion_list": emotion_list(),
        "rating_scale": rating_scale(),
        "extra_dimensions": extra_dimensions(),
        "answer_format": answer_format(),
        "examples": examples(),
        "nonzero_rule": nonzero_rule(max_nonzero) if max_nonzero else "",
    }


def build_prompt(kind: str, template_file: str | Path | None = None) -> Prompt:
    """Render the built-in template for ``kind`` or the researcher's ``template_file``.

    ``kind`` decides validation (multi-shot enforces the top-5 rule its prompt states) and the
    annotator suffix; a custom template may use any of the ``$placeholders`` listed in the module
    docstring (unknown ``$words`` are left as they are).
    """
    if kind not in PROMPT_KINDS:
        raise InputError(f"--prompt {kind!r}: expected one of {', '.join(PROMPT_KINDS)}")
    max_nonzero = MULTI_SHOT_MAX_NONZERO if kind == "multi-shot" else None
    if template_file is None:
        template, source = (ZERO_SHOT_TEMPLATE if kind == "zero-shot" else MULTI_SHOT_TEMPLATE), "built-in"
    else:
        path = Path(template_file)
        try:
            template = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the prompt file ({exc}); give a UTF-8 text file") from None
        if not template.strip():
            raise InputError(f"{path}: the prompt file is empty; write the prompt text into it")
        source = str(path)
    text = Template(template).safe_substitute(_sections(max_nonzero)).strip() + "\n"
    return Prompt(kind=kind, text=text, source=source, max_nonzero=max_nonzero)
