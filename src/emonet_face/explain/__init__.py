"""Explanations: which patches of a face crop drive each emotion's score.

* :mod:`~emonet_face.explain.methods`: the maps (:class:`Explainer`: integrated gradients,
  occlusion) over the encoder's patch grid, from an encoder and the fused heads.
* :mod:`~emonet_face.explain.table`: the explanation table (one row per input, face and emotion)
  and which emotions a crop gets (``predict``'s top ones, or those named).
* :mod:`~emonet_face.explain.runner`: pictures → crops → scores and maps (:func:`explain_refs`).
* :mod:`~emonet_face.explain.runs`: a run's options (:class:`ExplainOptions`) and writing its maps
  part by part, with the pictures (:func:`write_explanations`).
* :mod:`~emonet_face.explain.placement`: where a crop lies in its picture (to draw a map back over it).
* :mod:`~emonet_face.explain.faithfulness`: deletion and insertion curves, to check a method.
* :mod:`~emonet_face.explain.figures`: the pictures (matplotlib, imported only when drawing).

This package sits below the pipeline: :meth:`emonet_face.pipeline.EmoNetFace.explain` feeds it crops,
and :func:`emonet_face.pipeline.explain_run` writes a run (``emonet-face explain``).
"""

from emonet_face.explain.faithfulness import FaithfulnessCurves, faithfulness_curves
from emonet_face.explain.methods import (
    DEFAULT_METHOD,
    DEFAULT_STEPS,
    GRADIENT_METHODS,
    METHODS,
    Explainer,
    encoder_patch_size,
    grey_pixels,
)
from emonet_face.explain.placement import Placement, placement_for
from emonet_face.explain.runner import explain_refs
from emonet_face.explain.runs import ExplainOptions, ExplainSummary, write_explanations
from emonet_face.explain.table import (
    EXPLAIN_COLUMNS,
    ExplainedCrop,
    ExplainedImage,
    explanation_table,
    parse_emotions,
    ranked_emotions,
)

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_STEPS",
    "EXPLAIN_COLUMNS",
    "GRADIENT_METHODS",
    "METHODS",
    "ExplainOptions",
    "ExplainSummary",
    "ExplainedCrop",
    "ExplainedImage",
    "Explainer",
    "FaithfulnessCurves",
    "Placement",
    "encoder_patch_size",
    "explain_refs",
    "explanation_table",
    "faithfulness_curves",
    "grey_pixels",
    "parse_emotions",
    "placement_for",
    "ranked_emotions",
    "write_explanations",
]
