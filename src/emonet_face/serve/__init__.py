"""``emonet-face serve``: an HTTP API with dynamic batching, and a page for people (see
:mod:`emonet_face.serve.app`). Needs the ``serve`` extra (FastAPI, uvicorn)."""

from emonet_face.serve.app import create_app
from emonet_face.serve.batcher import Batcher, QueueFull
from emonet_face.serve.config import BACKENDS, FACE_MODES, ServeConfig, load_model

__all__ = ["BACKENDS", "FACE_MODES", "Batcher", "QueueFull", "ServeConfig", "create_app", "load_model"]
