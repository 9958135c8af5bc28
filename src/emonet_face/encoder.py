"""Old import path, kept working: the PyTorch encoder now lives in :mod:`emonet_face.runtime.encoder`."""

from emonet_face.runtime.encoder import *  # noqa: F403
from emonet_face.runtime.encoder import __all__  # noqa: F401
