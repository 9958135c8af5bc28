"""The EmoNet-Face taxonomy: the single source of truth for emotion names, keys, families,
descriptor words, extra dimensions and released head file names.

Display names, families and descriptors are exactly those of the EmoNet-Face annotation guide
(``emonet-face_guide.json``); keys are the stems of the released head files
(``model_<key>_best.pth``). Every other module derives its lists from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "EMOTIONS",
    "EMOTION_KEYS",
    "EXTRA_DIMENSIONS",
    "EXTRA_KEYS",
    "FAMILIES",
    "HEAD_KEYS",
    "NEUTRAL_STATS_FILENAME",
    "Emotion",
    "ExtraDimension",
    "emotion",
    "head_file_name",
    "head_key_from_file_name",
    "head_stats_key",
    "resolve_emotion",
]

NEUTRAL_STATS_FILENAME = "neutral_stats_cache-_human-binary-big-mlps_v8_two_stage_higher_lr_stage2_5_200+"
"""Name of the neutral-statistics JSON file in a released heads folder (no suffix, as released)."""

EXTRA_FAMILY = "Extra Dimensions"


@dataclass(frozen=True)
class Emotion:
    """One of the 40 EmoNet-Face emotions."""

    key: str
    """Released head key, e.g. ``"jealousy_&_envy"``."""
    name: str
    """Display name as used in annotations, e.g. ``"Jealousy & Envy"``."""
    family: str
    """One of the 7 families, e.g. ``"Negative Low-Energy Emotions"``."""
    descriptors: tuple[str, ...]
    """Descriptor words from the annotation guide."""

    @property
    def annotation_key(self) -> str:
        """Key used in HQ annotation dicts: ``"<Family>|<Emotion>"``."""
        return f"{self.family}|{self.name}"

    @property
    def head_file(self) -> str:
        return head_file_name(self.key)


@dataclass(frozen=True)
class ExtraDimension:
    """One of the 4 extra dimensions rated alongside the emotions."""

    key: str
    name: str
    low: int
    high: int
    description: str

    @property
    def annotation_key(self) -> str:
        return f"{EXTRA_FAMILY}|{self.name}"

    @property
    def head_file(self) -> str:
        return head_file_name(self.key)


# (key, display name, descriptors), grouped by family in the guide's order.
_FAMILY_TABLE: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "Positive High-Energy Emotions": [
        (
            "amusement",
            "Amusement",
            (
                "lighthearted fun",
                "amusement",
                "mirth",
                "joviality",
                "laughter",
                "playfulness",
                "silliness",
                "jesting",
                "delight",
            ),
        ),
        (
            "elation",
            "Elation",
            ("happiness", "excitement", "joy", "exhilaration", "laughter", "jubilation", "cheerfulness"),
        ),
        ("pleasure_ecstasy", "Pleasure/Ecstasy", ("ecstasy", "pleasure", "bliss", "beatitude")),
        (
            "hope_enthusiasm_optimism",
            "Hope/Enthusiasm/Optimism",
            (
                "hope",
                "enthusiasm",
                "optimism",
                "anticipation",
                "courage",
                "encouragement",
                "zeal",
                "fervor",
                "inspiration",
                "determination",
            ),
        ),
        ("triumph", "Triumph", ("triumph", "superiority", "hubris")),
        ("interest", "Interest", ("interest", "fascination", "curiosity", "need for cognition")),
        ("awe", "Awe", ("awe", "awestruck", "wonder")),
        (
            "astonishment_surprise",
            "Astonishment/Surprise",
            ("astonishment", "surprise", "amazement", "shock", "startlement"),
        ),
        ("teasing", "Teasing", ("teasing", "bantering", "mocking playfully", "ribbing", "provoking lightly")),
    ],
    "Positive Low-Energy Emotions": [
        (
            "contentment",
            "Contentment",
            (
                "contentment",
                "relaxation",
                "peacefulness",
                "calmness",
                "satisfaction",
                "ease",
                "serenity",
                "bliss",
                "fulfillment",
                "gladness",
                "lightness",
                "serenity",
                "tranquility",
            ),
        ),
        (
            "thankfulness_gratitude",
            "Thankfulness/Gratitude",
            ("thankfulness", "gratitude", "appreciation", "gratefulness"),
        ),
        (
            "affection",
            "Affection",
            (
                "sympathy",
                "compassion",
                "warmth",
                "trust",
                "caring",
                "forgiveness",
                "devotion",
                "tenderness",
                "reverence",
            ),
        ),
        ("relief", "Relief", ("relief", "respite", "alleviation", "solace", "comfort", "liberation")),
        (
            "contemplation",
            "Contemplation",
            ("contemplation", "thoughtfulness", "pondering", "reflection", "meditation", "brooding", "pensiveness"),
        ),
        ("pride", "Pride", ("pride", "dignity", "self-confidently", "honor", "self-consciousness")),
    ],
    "Negative High-Energy Emotions": [
        ("fear", "Fear", ("fear", "terror", "dread", "apprehension", "alarm", "horror", "panic", "nervousness")),
        ("anger", "Anger", ("anger", "rage", "fury", "hate", "irascibility", "enragement", "wrath", "annoyance")),
        (
            "malevolence_malice",
            "Malevolence/Malice",
            (
                "spite",
                "sadism",
                "malevolence",
                "malice",
                "malicious envy",
                "revenge",
                "desire to harm",
                "schadenfreude",
            ),
        ),
        ("disgust", "Disgust", ("disgust", "revulsion", "repulsion", "abhorrence", "loathing")),
        (
            "impatience_and_irritability",
            "Impatience and Irritability",
            ("impatience", "irritability", "irritation", "restlessness", "short-temperedness", "exasperation"),
        ),
        (
            "distress",
            "Distress",
            ("worry", "anxiety", "unease", "anguish", "trepidation", "concern", "upset", "pessimism", "foreboding"),
        ),
    ],
    "Negative Low-Energy Emotions": [
        (
            "sadness",
            "Sadness",
            (
                "sadness",
                "sorrow",
                "grief",
                "melancholy",
                "dejection",
                "despair",
                "self-pity",
                "sullenness",
                "heartache",
                "mournfulness",
                "misery",
            ),
        ),
        ("bitterness", "Bitterness", ("resentment", "acrimony", "bitterness", "cynicism", "rancor", "malicious envy")),
        ("contempt", "Contempt", ("contempt", "disapproval", "scorn", "disdain", "loathing", "detestation")),
        ("disappointment", "Disappointment", ("disappointment", "regret", "dismay", "letdown", "chagrin")),
        ("shame", "Shame", ("shame", "guilt", "remorse", "humiliation", "contrition")),
        (
            "emotional_numbness",
            "Emotional Numbness",
            (
                "numbness",
                "detachment",
                "insensitivity",
                "emotional blunting",
                "apathy",
                "existential void",
                "boredom",
                "stoicism",
                "indifference",
            ),
        ),
        ("doubt", "Doubt", ("doubt", "distrust", "suspicion", "skepticism", "uncertainty", "pessimism")),
        ("jealousy_&_envy", "Jealousy & Envy", ("jealousy", "envy", "covetousness")),
        (
            "embarrassment",
            "Embarrassment",
            ("embarrassment", "shyness", "mortification", "discomfiture", "awkwardness", "self-consciousness"),
        ),
        (
            "helplessness",
            "Helplessness",
            ("helplessness", "hopelessness", "powerlessness", "desperation", "submission"),
        ),
    ],
    "Cognitive States and Processes": [
        ("concentration", "Concentration", ("concentration", "deep focus", "engrossment", "absorption", "attention")),
        ("confusion", "Confusion", ("confusion", "bewilderment", "disorientation", "perplexity")),
    ],
    "Physical and Exhaustive States": [
        ("pain", "Pain", ("physical pain", "suffering", "torment", "ache", "agony")),
        (
            "fatigue_exhaustion",
            "Fatigue/Exhaustion",
            ("fatigue", "exhaustion", "weariness", "lethargy", "burnout", "Weariness"),
        ),
        (
            "intoxication_altered_states_of_consciousness",
            "Intoxication/Altered States of Consciousness",
            ("being drunk", "stupor", "intoxication", "disorientation", "altered perception"),
        ),
        ("sourness", "Sourness", ("sourness", "tartness", "acidity", "acerbity", "sharpness")),
    ],
    "Longing & Lust": [
        (
            "longing",
            "Longing",
            (
                "yearning",
                "longing",
                "pining",
                "wistfulness",
                "nostalgia",
                "craving",
                "desire",
                "benign envy",
                "homesickness",
            ),
        ),
        ("sexual_lust", "Sexual Lust", ("sexual lust", "carnal desire", "lust", "feeling horny", "feeling turned on")),
        (
            "infatuation",
            "Infatuation",
            ("infatuation", "having a crush", "romantic desire", "fondness", "butterflies in the stomach", "adoration"),
        ),
    ],
}

FAMILIES: tuple[str, ...] = tuple(_FAMILY_TABLE)
"""The 7 emotion families in the guide's order."""

# Column / head order of the released models (the order the release lists its heads in).
_HEAD_ORDER = (
    "elation",
    "amusement",
    "pleasure_ecstasy",
    "astonishment_surprise",
    "hope_enthusiasm_optimism",
    "triumph",
    "awe",
    "teasing",
    "interest",
    "relief",
    "contentment",
    "contemplation",
    "pride",
    "thankfulness_gratitude",
    "affection",
    "anger",
    "fear",
    "distress",
    "impatience_and_irritability",
    "disgust",
    "malevolence_malice",
    "helplessness",
    "sadness",
    "emotional_numbness",
    "jealousy_&_envy",
    "embarrassment",
    "contempt",
    "shame",
    "disappointment",
    "doubt",
    "bitterness",
    "concentration",
    "confusion",
    "fatigue_exhaustion",
    "pain",
    "sourness",
    "intoxication_altered_states_of_consciousness",
    "sexual_lust",
    "longing",
    "infatuation",
)

_BY_KEY = {
    key: Emotion(key=key, name=name, family=family, descriptors=descriptors)
    for family, rows in _FAMILY_TABLE.items()
    for key, name, descriptors in rows
}

EMOTIONS: tuple[Emotion, ...] = tuple(_BY_KEY[key] for key in _HEAD_ORDER)
"""The 40 emotions, in the released head order."""

EMOTION_KEYS: tuple[str, ...] = _HEAD_ORDER

EXTRA_DIMENSIONS: tuple[ExtraDimension, ...] = (
    ExtraDimension("arousal", "Arousal", 0, 7, "physiological activation, from calm (0) to highly activated (7)"),
    ExtraDimension("valence", "Valence", -3, 3, "from very negative (-3) through neutral (0) to very positive (3)"),
    ExtraDimension("dominance", "Dominance", -3, 3, "from submissive, controlled (-3) to dominant, in control (3)"),
    ExtraDimension(
        "emotional_vulnerability",
        "Emotional Vulnerability",
        0,
        5,
        "how open, exposed or fragile the person appears, from not at all (0) to extremely (5)",
    ),
)
EXTRA_KEYS: tuple[str, ...] = tuple(d.key for d in EXTRA_DIMENSIONS)

HEAD_KEYS: tuple[str, ...] = EMOTION_KEYS + EXTRA_KEYS
"""All 44 head keys: the 40 emotions then the 4 extra dimensions."""

_HEAD_FILE_RE = re.compile(r"^model_(?P<key>.+)_best(?:\.pth)?$")


def head_file_name(key: str) -> str:
    """``"anger"`` → ``"model_anger_best.pth"`` (the released file name)."""
    return f"model_{key}_best.pth"


def head_stats_key(key: str) -> str:
    """``"anger"`` → ``"model_anger_best"``: the key used in the neutral-stats JSON and results files."""
    return f"model_{key}_best"


def head_key_from_file_name(name: str) -> str | None:
    """Inverse of :func:`head_file_name` / :func:`head_stats_key`; ``None`` if ``name`` is not one."""
    match = _HEAD_FILE_RE.match(name)
    return match.group("key") if match else None


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9&]+", "", text.lower())


_LOOKUP: dict[str, Emotion | ExtraDimension] = {}
_ITEMS: tuple[Emotion | ExtraDimension, ...] = (*EMOTIONS, *EXTRA_DIMENSIONS)
for _item in _ITEMS:
    for _alias in (_item.key, _item.name, _item.annotation_key, head_stats_key(_item.key), _item.head_file):
        _LOOKUP[_normalise(_alias)] = _item
    if isinstance(_item, Emotion):  # short name before the first "/", e.g. "Astonishment"
        _LOOKUP.setdefault(_normalise(_item.name.split("/")[0]), _item)


# Names the released data uses for an emotion besides its display name.
_DATA_ALIASES = {
    "Hopelessness": "helplessness",  # the BINARY votes CSV names Helplessness by this descriptor word
}
for _alias, _key in _DATA_ALIASES.items():
    _LOOKUP[_normalise(_alias)] = _BY_KEY[_key]


def resolve_emotion(text: str) -> Emotion | ExtraDimension:
    """Find an emotion or extra dimension from any of its spellings.

    Accepts the key (``"jealousy_&_envy"``), the display name (``"Jealousy & Envy"``), the HQ
    annotation key (``"Negative Low-Energy Emotions|Jealousy & Envy"``), the released stats key
    (``"model_jealousy_&_envy_best"``) or file name, case- and punctuation-insensitively, plus the
    aliases the released data uses (BINARY's ``"Hopelessness"`` for Helplessness).
    """
    found = _LOOKUP.get(_normalise(text))
    if found is None:
        raise KeyError(
            f"unknown emotion or dimension {text!r}; expected one of the 40 EmoNet-Face emotions or 4 extra dimensions"
        )
    return found


def emotion(key: str) -> Emotion:
    """The :class:`Emotion` for a head key (strict)."""
    return _BY_KEY[key]
