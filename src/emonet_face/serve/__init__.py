"""``emonet-face serve``: an HTTP API with dynamic batching, and a page for people (see
:mod:`emonet_face.serve.app`). Needs the ``serve`` extra (FastAPI, uvicorn)."""

from emonet_face.serve.app import BACKENDS, FACE_MODES, ServeConfig, create_app, load_model
from emonet_face.serve.batcher import Batcher, QueueFull

__all__ = ["BACKENDS", "FACE_MODES", "Batcher", "QueueFull", "ServeConfig", "create_app", "load_model"]
