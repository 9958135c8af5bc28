"""The pipeline: inputs → items → the one scorer → score tables, behind :class:`EmoNetFace`.

* :mod:`~emonet_face.pipeline.model`: :class:`EmoNetFace`, the façade users hold.
* :mod:`~emonet_face.pipeline.loading`: the three kinds of ``--model`` (released, bundle, exported).
* :mod:`~emonet_face.pipeline.refs`: what users pass (paths, PIL images, numpy arrays) → refs.
* :mod:`~emonet_face.pipeline.batching`: the local engine's DataLoader loop → groups of items.
* :mod:`~emonet_face.pipeline.scorer`: :class:`Scorer`, the single place where features become rows
  (used by ``predict``, the Ray engine, the server and live streams).
* :mod:`~emonet_face.pipeline.runs`: runs with tracks, pictures and a written table with resume.
* :mod:`~emonet_face.pipeline.explaining`: explanation runs (maps and pictures written into a folder).
"""

from emonet_face.pipeline.explaining import explain_run
from emonet_face.pipeline.loading import LoadedModel, load_model
from emonet_face.pipeline.model import EmoNetFace
from emonet_face.pipeline.refs import input_refs
from emonet_face.pipeline.runs import RunOptions, RunSummary
from emonet_face.pipeline.scorer import Annotate, Scored, Scorer

__all__ = [
    "Annotate",
    "EmoNetFace",
    "LoadedModel",
    "RunOptions",
    "RunSummary",
    "Scored",
    "Scorer",
    "explain_run",
    "input_refs",
    "load_model",
]
