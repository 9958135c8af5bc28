"""emonet-face: fine-grained facial emotion recognition on the EmoNet-Face taxonomy.

Public API (everything else is internal and may change)."""

from emonet_face._version import __version__
from emonet_face.errors import EmoNetError, InputError, ModelLoadError
from emonet_face.export import export_model
from emonet_face.heads import FusedHeads, load_heads, postprocess_scores, save_heads
from emonet_face.hub import MODELS, resolve_model_dir
from emonet_face.inputs import ImageSource
from emonet_face.options import FaceOptions, MediaOptions, ModelOptions
from emonet_face.outputs import build_score_table, open_writer, read_table
from emonet_face.pipeline import EmoNetFace, RunOptions, RunSummary, Scorer
from emonet_face.runtime import CompiledEncoder, Encoder, ExportedGraph, ImageEncoder, load_encoder, register_backend
from emonet_face.taxonomy import (
    EMOTION_KEYS,
    EMOTIONS,
    EXTRA_DIMENSIONS,
    EXTRA_KEYS,
    FAMILIES,
    HEAD_KEYS,
    resolve_emotion,
)

__all__ = [
    "EMOTIONS",
    "EMOTION_KEYS",
    "EXTRA_DIMENSIONS",
    "EXTRA_KEYS",
    "FAMILIES",
    "HEAD_KEYS",
    "MODELS",
    "CompiledEncoder",
    "EmoNetError",
    "EmoNetFace",
    "Encoder",
    "ExportedGraph",
    "FaceOptions",
    "FusedHeads",
    "ImageEncoder",
    "ImageSource",
    "InputError",
    "MediaOptions",
    "ModelLoadError",
    "ModelOptions",
    "RunOptions",
    "RunSummary",
    "Scorer",
    "__version__",
    "build_score_table",
    "export_model",
    "load_encoder",
    "load_heads",
    "open_writer",
    "postprocess_scores",
    "read_table",
    "register_backend",
    "resolve_emotion",
    "resolve_model_dir",
    "save_heads",
]
