"""emonet-face: fine-grained facial emotion recognition on the EmoNet-Face taxonomy.

Public API (everything else is internal and may change)."""

from emonet_face.errors import EmoNetError, InputError, ModelLoadError
from emonet_face.heads import FusedHeads, load_heads, postprocess_scores, save_heads
from emonet_face.hub import MODELS, resolve_model_dir
from emonet_face.taxonomy import (
    EMOTION_KEYS,
    EMOTIONS,
    EXTRA_DIMENSIONS,
    EXTRA_KEYS,
    FAMILIES,
    HEAD_KEYS,
    resolve_emotion,
)

__version__ = "0.1.0"

__all__ = [
    "EMOTIONS",
    "EMOTION_KEYS",
    "EXTRA_DIMENSIONS",
    "EXTRA_KEYS",
    "FAMILIES",
    "HEAD_KEYS",
    "MODELS",
    "EmoNetError",
    "FusedHeads",
    "InputError",
    "ModelLoadError",
    "__version__",
    "load_heads",
    "postprocess_scores",
    "resolve_emotion",
    "resolve_model_dir",
    "save_heads",
]
